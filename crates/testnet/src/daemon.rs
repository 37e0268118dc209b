//! Real daemons (Debian's, installed by scripts/deps.sh) running inside the
//! target namespace with configuration files of the test's own in a fresh
//! directory: no systemd, no files under /etc, nothing reachable from
//! outside the namespaces. [`Daemon`] kills its process on drop.
//!
//! The `start_*` helpers on [`TestNet`] each write a small configuration
//! and wait until the daemon has bound its UDP port, so that a test's first
//! probe finds it ready.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::TestNet;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A daemon running in a namespace; SIGTERM then SIGKILL on drop, its
/// directory removed.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    ns: String,
    child: Child,
    dir: PathBuf,
}

/// Where Debian installs each daemon the helpers run.
pub mod bin {
    /// dnsmasq (package dnsmasq).
    pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";
    /// chronyd (package chrony).
    pub const CHRONYD: &str = "/usr/sbin/chronyd";
    /// snmpd (package snmpd).
    pub const SNMPD: &str = "/usr/sbin/snmpd";
    /// memcached (package memcached).
    pub const MEMCACHED: &str = "/usr/bin/memcached";
    /// miniupnpd (package miniupnpd, nftables backend).
    pub const MINIUPNPD: &str = "/usr/sbin/miniupnpd";
    /// avahi-daemon (package avahi-daemon).
    pub const AVAHI: &str = "/usr/sbin/avahi-daemon";
    /// libcoap's example server without DTLS (package libcoap3-bin).
    pub const COAP_SERVER: &str = "/usr/bin/coap-server-notls";
    /// rpcbind, the portmapper (package rpcbind).
    pub const RPCBIND: &str = "/usr/sbin/rpcbind";
    /// ntpsec's ntpd, unpacked (not installed: it conflicts with chrony) by
    /// scripts/deps.sh.
    pub const NTPSEC_NTPD: &str = "/var/lib/harbormaster/ntpsec/usr/sbin/ntpd";
    /// tftpd-hpa's server (package tftpd-hpa).
    pub const TFTPD: &str = "/usr/sbin/in.tftpd";
    /// OpenVPN (package openvpn).
    pub const OPENVPN: &str = "/usr/sbin/openvpn";
    /// The openssl CLI, for OpenVPN's throwaway certificate.
    pub const OPENSSL: &str = "/usr/bin/openssl";
    /// Kamailio, a SIP server (package kamailio).
    pub const KAMAILIO: &str = "/usr/sbin/kamailio";
    /// OpenIPMI's BMC simulator (package openipmi).
    pub const IPMI_SIM: &str = "/usr/bin/ipmi_sim";
    /// util-linux's setpriv, to start ntpd without CAP_SYS_TIME.
    pub const SETPRIV: &str = "/usr/bin/setpriv";
}

impl Daemon {
    /// The daemon's directory (its configuration, pid file and log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote to stdout and stderr (and to `log` in its directory) so far.
    pub fn log(&self) -> String {
        Daemon::read_log(&self.dir)
    }

    /// Waits until a UDP socket is bound to `ip:port` (or to the wildcard
    /// address and `port`) in the daemon's namespace, read from
    /// `/proc/thread-self/net/udp` there, failing early if the daemon exits.
    pub fn wait_udp(&mut self, ip: Ipv4Addr, port: u16, timeout: Duration) -> Result<(), String> {
        // /proc prints the address as the in-memory (network-order) u32 in hex.
        let hex = |a: Ipv4Addr| format!("{:08X}:{port:04X}", u32::from_ne_bytes(a.octets()));
        let wanted = [hex(ip), hex(Ipv4Addr::UNSPECIFIED)];
        self.wait_until(timeout, &format!("bind UDP {ip}:{port}"), |ns| {
            crate::in_namespace(ns, || {
                std::fs::read_to_string("/proc/thread-self/net/udp").is_ok_and(|t| {
                    t.lines()
                        .skip(1)
                        .filter_map(|l| l.split_whitespace().nth(1))
                        .any(|a| wanted.iter().any(|w| w == a))
                })
            })
        })
    }

    /// Waits until the daemon's output or log contains `text`.
    pub fn wait_log(&mut self, text: &str, timeout: Duration) -> Result<(), String> {
        let dir = self.dir.clone();
        self.wait_until(timeout, &format!("log {text:?}"), |_| {
            Daemon::read_log(&dir).contains(text)
        })
    }

    fn read_log(dir: &Path) -> String {
        let mut s = std::fs::read_to_string(dir.join("output")).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(dir.join("log")).unwrap_or_default());
        s
    }

    fn wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut ready: impl FnMut(&str) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{} exited ({status}): {}", self.name, self.log()));
            }
            if ready(&self.ns) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not {what} within {timeout:?}: {}",
                    self.name,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // `ip netns exec` (and `sh -c 'exec …'`) exec the daemon in place, so
        // the child is the daemon itself and leads its group: ask the group
        // to stop, then make it.
        // The negative PID names the daemon's process group (see spawn_in_target).
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fails (or, with `HARBORMASTER_REQUIRE_NETNS=1`, panics) if `program` is missing.
fn installed(program: &str) -> Result<(), String> {
    if Path::new(program).exists() {
        return Ok(());
    }
    let why = format!("{program} is not installed (scripts/deps.sh installs it)");
    if crate::required() {
        panic!("HARBORMASTER_REQUIRE_NETNS=1 but {why}");
    }
    Err(why)
}

impl TestNet {
    /// Runs `program` inside the target namespace. `configure` gets the
    /// daemon's fresh directory, writes its files there and returns the
    /// arguments; `env` is added to the environment (`$DIR` in a value
    /// stands for the directory). The daemon must stay in
    /// the foreground. Its stdout and stderr go to `output` in the directory.
    pub fn spawn_in_target(
        &self,
        name: &str,
        program: &str,
        env: &[(&str, &str)],
        configure: impl FnOnce(&Path) -> Result<Vec<OsString>, String>,
    ) -> Result<Daemon, String> {
        installed(program)?;
        let dir = std::env::temp_dir().join(format!(
            "hm-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let args = configure(&dir)?;
        let output = std::fs::File::create(dir.join("output")).map_err(|e| e.to_string())?;
        let err = output.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("ip");
        // A process group of its own, so that drop also stops the helper
        // processes some daemons fork (kamailio, avahi).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.args(["netns", "exec", &self.target_ns, program])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v.replace("$DIR", &dir.display().to_string()));
        }
        let child = cmd.spawn().map_err(|e| format!("start {program}: {e}"))?;
        Ok(Daemon {
            name: name.to_string(),
            ns: self.target_ns.clone(),
            child,
            dir,
        })
    }

    /// Starts dnsmasq on `listen:port` with `config` (lines of dnsmasq.conf)
    /// added to a base that uses no system files (no resolv.conf, no hosts),
    /// binds only that address, and logs queries.
    pub fn start_dnsmasq(
        &self,
        listen: Ipv4Addr,
        port: u16,
        config: &str,
    ) -> Result<Daemon, String> {
        let mut d = self.spawn_in_target("dnsmasq", bin::DNSMASQ, &[], |dir| {
            let conf = dir.join("dnsmasq.conf");
            let text = format!(
                "keep-in-foreground\nno-resolv\nno-hosts\nno-poll\nbind-interfaces\n\
                 listen-address={listen}\nport={port}\nuser=root\ngroup=root\n\
                 pid-file={pid}\nlog-facility={log}\nlog-queries\n{config}\n",
                pid = dir.join("pid").display(),
                log = dir.join("log").display(),
            );
            std::fs::write(&conf, text).map_err(|e| e.to_string())?;
            Ok(vec![format!("--conf-file={}", conf.display()).into()])
        })?;
        d.wait_udp(listen, port, Duration::from_secs(10))?;
        Ok(d)
    }

    /// Starts chronyd as an NTP server on `listen`:123 serving its own clock
    /// at stratum 8 (`local`) to 198.18.0.0/15, without touching the system
    /// clock (`-x`) and without a command socket.
    pub fn start_chronyd(&self, listen: Ipv4Addr) -> Result<Daemon, String> {
        let mut d = self.spawn_in_target("chronyd", bin::CHRONYD, &[], |dir| {
            let conf = dir.join("chrony.conf");
            let text = format!(
                "allow 198.18.0.0/15\nlocal stratum 8\nport 123\nbindaddress {listen}\n\
                 cmdport 0\nbindcmdaddress /\npidfile {pid}\n",
                pid = dir.join("pid").display()
            );
            std::fs::write(&conf, text).map_err(|e| e.to_string())?;
            Ok(["-d", "-x", "-u", "root", "-f"]
                .iter()
                .map(OsString::from)
                .chain([conf.into_os_string()])
                .collect())
        })?;
        d.wait_udp(listen, 123, Duration::from_secs(10))?;
        Ok(d)
    }

    /// Starts snmpd on `listen`:161 with the read-only community `public`
    /// for 198.18.0.0/15 and its built-in sysDescr (from `uname`); only our
    /// configuration is read (`-C`), persistent state goes to its directory.
    pub fn start_snmpd(&self, listen: Ipv4Addr) -> Result<Daemon, String> {
        let mut d = self.spawn_in_target(
            "snmpd",
            bin::SNMPD,
            // No MIB files are needed to answer numeric OIDs; loading them
            // only fills the log with warnings.
            &[("SNMP_PERSISTENT_DIR", "$DIR"), ("MIBS", "")],
            |dir| {
                let conf = dir.join("snmpd.conf");
                std::fs::write(&conf, "rocommunity public 198.18.0.0/15\n")
                    .map_err(|e| e.to_string())?;
                Ok(vec![
                    "-f".into(),
                    "-Lf".into(),
                    dir.join("log").into_os_string(),
                    "-C".into(),
                    "-c".into(),
                    conf.into_os_string(),
                    "-p".into(),
                    dir.join("pid").into_os_string(),
                    format!("udp:{listen}:161").into(),
                ])
            },
        )?;
        d.wait_udp(listen, 161, Duration::from_secs(10))?;
        Ok(d)
    }

    /// Starts memcached with UDP on `listen`:11211 and TCP off.
    pub fn start_memcached(&self, listen: Ipv4Addr) -> Result<Daemon, String> {
        let mut d = self.spawn_in_target("memcached", bin::MEMCACHED, &[], |_| {
            Ok([
                "-u",
                "root",
                "-l",
                &listen.to_string(),
                "-U",
                "11211",
                "-p",
                "0",
                "-m",
                "16",
                "-t",
                "1",
            ]
            .iter()
            .map(OsString::from)
            .collect())
        })?;
        d.wait_udp(listen, 11211, Duration::from_secs(10))?;
        Ok(d)
    }

    /// Starts miniupnpd (UPnP IGD with SSDP on 1900) on the target's
    /// interface, which serves as both its LAN and WAN side, with the fixed
    /// device UUID `uuid`.
    pub fn start_miniupnpd(&self, uuid: &str) -> Result<Daemon, String> {
        let mut d = self.spawn_in_target("miniupnpd", bin::MINIUPNPD, &[], |dir| {
            let conf = dir.join("miniupnpd.conf");
            let text = format!(
                "ext_ifname=veth1\nlistening_ip=veth1\nhttp_port=5000\nenable_natpmp=no\n\
                 enable_upnp=yes\nsecure_mode=yes\nsystem_uptime=yes\nuuid={uuid}\n\
                 allow 1024-65535 198.18.0.0/15 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n"
            );
            std::fs::write(&conf, text).map_err(|e| e.to_string())?;
            Ok(vec![
                "-d".into(),
                "-f".into(),
                conf.into_os_string(),
                "-P".into(),
                dir.join("pid").into_os_string(),
            ])
        })?;
        d.wait_udp(crate::TARGET_IP, 1900, Duration::from_secs(10))?;
        Ok(d)
    }

    /// Starts avahi-daemon (mDNS on 5353) on the target's interface with host
    /// name `host`, without D-Bus. avahi keeps its pid file and socket at a
    /// fixed path under /run, so it runs with a private tmpfs there (`ip
    /// netns exec` already gives it a mount namespace of its own).
    pub fn start_avahi(&self, host: &str) -> Result<Daemon, String> {
        installed(bin::AVAHI)?;
        let mut d = self.spawn_in_target("avahi", "/bin/sh", &[], |dir| {
            let conf = dir.join("avahi-daemon.conf");
            let text = format!(
                "[server]\nhost-name={host}\ndomain-name=local\nuse-ipv4=yes\nuse-ipv6=no\n\
                 allow-interfaces=veth1\nenable-dbus=no\n[publish]\npublish-addresses=yes\n\
                 publish-workstation=yes\n"
            );
            std::fs::write(&conf, text).map_err(|e| e.to_string())?;
            Ok(vec![
                "-c".into(),
                format!(
                    "mount -t tmpfs hm-avahi /run && mkdir -p /run/avahi-daemon && exec {} \
                     --no-drop-root --no-chroot --no-rlimits --no-proc-title -f {}",
                    bin::AVAHI,
                    conf.display()
                )
                .into(),
            ])
        })?;
        // avahi answers only once it has probed for its host name (RFC 6762
        // §8.1), which it reports on stderr.
        d.wait_log("Server startup complete", Duration::from_secs(15))?;
        Ok(d)
    }

    /// Starts libcoap's example CoAP server on `listen`:5683 (resources `/`,
    /// `/time`, `/async` and `/.well-known/core`).
    pub fn start_coap_server(&self, listen: Ipv4Addr) -> Result<Daemon, String> {
        let mut d = self.spawn_in_target("coap-server", bin::COAP_SERVER, &[], |_| {
            Ok(["-A", &listen.to_string(), "-p", "5683"]
                .iter()
                .map(OsString::from)
                .collect())
        })?;
        d.wait_udp(listen, 5683, Duration::from_secs(10))?;
        Ok(d)
    }

    /// Starts rpcbind (the portmapper, port 111 on every address of the
    /// target) in the foreground. It keeps its state and socket at fixed
    /// paths under /run, so, like avahi, it gets a private tmpfs there.
    /// (rpcbind 1.2.6's `-h` to pick one address crashes with a double free,
    /// so it binds the wildcard address.)
    pub fn start_rpcbind(&self) -> Result<Daemon, String> {
        installed(bin::RPCBIND)?;
        let mut d = self.spawn_in_target("rpcbind", "/bin/sh", &[], |_| {
            Ok(vec![
                "-c".into(),
                format!("mount -t tmpfs hm-rpcbind /run && exec {} -f", bin::RPCBIND).into(),
            ])
        })?;
        d.wait_udp(crate::TARGET_IP, 111, Duration::from_secs(10))?;
        Ok(d)
    }

    /// Starts ntpsec's ntpd on `listen`:123 with no time sources, answering
    /// mode-6 control queries from 198.18.0.0/15 (`restrict … nomodify`
    /// without `noquery`: the exposure the mode-6 probe looks for). It runs
    /// without CAP_SYS_TIME in its bounding set and with `disable kernel`,
    /// so it cannot change the clock or the kernel's time state, which the
    /// namespaces share with the host.
    pub fn start_ntpsec(&self, listen: Ipv4Addr) -> Result<Daemon, String> {
        installed(bin::NTPSEC_NTPD)?;
        let mut d = self.spawn_in_target("ntpsec", bin::SETPRIV, &[], |dir| {
            let conf = dir.join("ntp.conf");
            let text = format!(
                "interface ignore wildcard\ninterface listen {listen}\ndisable kernel\n\
                 restrict default kod nomodify noquery\n\
                 restrict 198.18.0.0 mask 255.254.0.0 nomodify\n\
                 driftfile {drift}\n",
                drift = dir.join("drift").display()
            );
            std::fs::write(&conf, text).map_err(|e| e.to_string())?;
            Ok(vec![
                "--bounding-set".into(),
                "-sys_time".into(),
                bin::NTPSEC_NTPD.into(),
                "-n".into(),
                "-c".into(),
                conf.into_os_string(),
                "-p".into(),
                dir.join("pid").into_os_string(),
            ])
        })?;
        d.wait_udp(listen, 123, Duration::from_secs(10))?;
        Ok(d)
    }

    /// Starts tftpd-hpa on `listen`:69 in the foreground serving an empty
    /// directory of its own (`-s`: chrooted there).
    pub fn start_tftpd(&self, listen: Ipv4Addr) -> Result<Daemon, String> {
        let mut d = self.spawn_in_target("tftpd", bin::TFTPD, &[], |dir| {
            let root = dir.join("root");
            std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
            Ok(vec![
                "-l".into(),
                "-L".into(),
                "-u".into(),
                "root".into(),
                "-a".into(),
                format!("{listen}:69").into(),
                "-s".into(),
                root.into_os_string(),
            ])
        })?;
        d.wait_udp(listen, 69, Duration::from_secs(10))?;
        Ok(d)
    }

    /// Starts an OpenVPN TLS server on `listen`:1194 (point-to-point mode,
    /// `dev null`: no tun device needed) with a throwaway self-signed P-256
    /// certificate made by the openssl CLI, and no `tls-auth`, so it answers
    /// anyone's hard reset.
    pub fn start_openvpn(&self, listen: Ipv4Addr) -> Result<Daemon, String> {
        installed(bin::OPENSSL)?;
        let mut d = self.spawn_in_target("openvpn", bin::OPENVPN, &[], |dir| {
            let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
            let out = Command::new(bin::OPENSSL)
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                ])
                .args([
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=harbormaster-test",
                    "-keyout",
                ])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .map_err(|e| format!("openssl: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "openssl req: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let conf = dir.join("server.conf");
            let text = format!(
                "tls-server\nproto udp4\nlocal {listen}\nport 1194\ndev null\nca {c}\ncert {c}\n\
                 key {k}\ndh none\nverb 3\n",
                c = cert.display(),
                k = key.display()
            );
            std::fs::write(&conf, text).map_err(|e| e.to_string())?;
            Ok(vec!["--config".into(), conf.into_os_string()])
        })?;
        d.wait_udp(listen, 1194, Duration::from_secs(10))?;
        Ok(d)
    }

    /// Starts Kamailio on `listen`:5060 (UDP only, one process) with a
    /// routing script that answers OPTIONS with 200 and anything else with
    /// 404, as a registrar or proxy on the internet answers a scanner.
    pub fn start_kamailio(&self, listen: Ipv4Addr) -> Result<Daemon, String> {
        let mut d = self.spawn_in_target("kamailio", bin::KAMAILIO, &[], |dir| {
            let conf = dir.join("kamailio.cfg");
            let text = format!(
                "#!KAMAILIO\ndebug=2\nlog_stderror=yes\nfork=no\nlisten=udp:{listen}:5060\n\
                 disable_tcp=yes\nmpath=\"/usr/lib/x86_64-linux-gnu/kamailio/modules/\"\n\
                 loadmodule \"sl.so\"\nloadmodule \"pv.so\"\n\
                 request_route {{\n  if ($rm == \"OPTIONS\") {{\n    sl_send_reply(\"200\", \"OK\");\n    exit;\n  }}\n\
                 sl_send_reply(\"404\", \"Not Found\");\n}}\n"
            );
            std::fs::write(&conf, text).map_err(|e| e.to_string())?;
            Ok(vec![
                "-DD".into(),
                "-E".into(),
                "-f".into(),
                conf.into_os_string(),
                "-P".into(),
                dir.join("pid").into_os_string(),
                "-Y".into(),
                dir.as_os_str().to_owned(),
            ])
        })?;
        d.wait_udp(listen, 5060, Duration::from_secs(10))?;
        Ok(d)
    }

    /// Starts OpenIPMI's BMC simulator with a LAN interface on `listen`:623
    /// accepting every IPMI 1.5 authentication type, an enabled null user
    /// (user 1) and an `admin` user: the factory setup of many BMCs.
    pub fn start_ipmi_sim(&self, listen: Ipv4Addr) -> Result<Daemon, String> {
        let mut d = self.spawn_in_target("ipmi_sim", bin::IPMI_SIM, &[], |dir| {
            let lan = dir.join("lan.conf");
            let auths = "none md2 md5 straight";
            let text = format!(
                "name \"hmbmc\"\nset_working_mc 0x20\n  startlan 1\n    addr {listen} 623\n\
                 priv_limit admin\n    allowed_auths_callback {auths}\n    allowed_auths_user {auths}\n\
                 allowed_auths_operator {auths}\n    allowed_auths_admin {auths}\n\
                 guid a123456789abcdefa123456789abcdef\n  endlan\n\
                 user 1 true \"\" \"test\" user 10 {auths}\n\
                 user 2 true \"admin\" \"test\" admin 10 {auths}\n"
            );
            std::fs::write(&lan, text).map_err(|e| e.to_string())?;
            let emu = dir.join("bmc.emu");
            std::fs::write(
                &emu,
                "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\nmc_enable 0x20\n",
            )
            .map_err(|e| e.to_string())?;
            let state = dir.join("state");
            std::fs::create_dir_all(&state).map_err(|e| e.to_string())?;
            Ok(vec![
                "-c".into(),
                lan.into_os_string(),
                "-f".into(),
                emu.into_os_string(),
                "-s".into(),
                state.into_os_string(),
                "-n".into(),
                "-p".into(),
            ])
        })?;
        d.wait_udp(listen, 623, Duration::from_secs(10))?;
        Ok(d)
    }
}
