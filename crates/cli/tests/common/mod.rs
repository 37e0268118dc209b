//! Helpers shared by the end-to-end tests of `harbormaster serve` (serve.rs,
//! browser.rs, proxy.rs): the real server binary in the scanner's network
//! namespace (or in a host of a `Lan`), and HTTP clients in the visitor's.

// Each test file uses its own subset of these.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use harbormaster_testnet::TestNet;

/// The server's address as the visitor sees it.
pub const SERVER: &str = "http://198.18.0.1:8080";
/// The server's IPv6 address as the visitor sees it (test hosts with
/// `TargetSpec::ipv6`, a server started with [`Server::start_at`] on `[::]:8080`).
pub const SERVER6: &str = "http://[fd00:198:18::1]:8080";

#[allow(unused_imports)]
pub(crate) use harbormaster_testnet::testnet_or_skip;

/// `harbormaster serve` running in the scanner namespace; killed on drop.
pub struct Server {
    child: Child,
}

impl Server {
    /// Starts the server on 198.18.0.1:8080 with `data_dir` and waits until it answers.
    pub fn start(net: &TestNet, data_dir: &std::path::Path) -> Server {
        Server::start_with(net, data_dir, &[])
    }

    /// [`Server::start`] with `extra` arguments.
    pub fn start_with(net: &TestNet, data_dir: &std::path::Path, extra: &[&str]) -> Server {
        Server::start_at(net, data_dir, "198.18.0.1:8080", SERVER, extra)
    }

    /// [`Server::start_with`] in `mode` (`syn` or `connect`).
    pub fn start_in_mode(
        net: &TestNet,
        data_dir: &std::path::Path,
        mode: &str,
        extra: &[&str],
    ) -> Server {
        Server::start_at_in_mode(net, data_dir, "198.18.0.1:8080", SERVER, mode, extra)
    }

    /// [`Server::start_with`] listening on `listen`; up once `url` answers
    /// from the visitor's namespace.
    pub fn start_at(
        net: &TestNet,
        data_dir: &std::path::Path,
        listen: &str,
        url: &'static str,
        extra: &[&str],
    ) -> Server {
        Server::start_at_in_mode(net, data_dir, listen, url, "syn", extra)
    }

    /// [`Server::start_at`] in `mode`.
    pub fn start_at_in_mode(
        net: &TestNet,
        data_dir: &std::path::Path,
        listen: &str,
        url: &'static str,
        mode: &str,
        extra: &[&str],
    ) -> Server {
        let child = net
            .scanner_command(assert_cmd::cargo::cargo_bin("harbormaster"))
            .args([
                "serve",
                "--listen",
                listen,
                "--allow-private",
                "--no-reverse-dns",
                "--mode",
                mode,
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start harbormaster serve");
        let server = Server { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if visit(net, move |a| a.get(url).call().is_ok()) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server did not come up");
    }

    /// The server's process id (`ip netns exec` execs it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = nix_pid(self.child.id());
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    }
}

impl Server {
    /// Starts `harbormaster serve --listen <listen> --data-dir <data_dir>
    /// --no-reverse-dns <extra…>` in host `host` of `lan` and waits until it
    /// accepts connections.
    pub fn start_in_lan(
        lan: &harbormaster_testnet::Lan,
        host: &str,
        listen: std::net::SocketAddr,
        data_dir: &std::path::Path,
        extra: &[&str],
    ) -> Server {
        let child = lan
            .command(host, assert_cmd::cargo::cargo_bin("harbormaster"))
            .args(["serve", "--listen", &listen.to_string(), "--no-reverse-dns"])
            .args(extra)
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start harbormaster serve");
        let mut server = Server { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        let ns = lan.host(host).ns.clone();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = server.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("harbormaster serve exited ({status}): {err}");
            }
            let up = harbormaster_testnet::in_namespace(&ns, || {
                std::net::TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok()
            });
            if up {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server did not come up");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nix_pid(id: u32) -> String {
    // `ip netns exec` execs the server in place, so the child's pid is the server's.
    id.to_string()
}

/// Runs `f` with an HTTP client living in the visitor's namespace.
pub fn visit<R: Send + 'static>(
    net: &TestNet,
    f: impl FnOnce(&ureq::Agent) -> R + Send + 'static,
) -> R {
    visit_from(&net.target_ns, f)
}

/// Runs `f` with an HTTP client living in namespace `ns`.
pub fn visit_from<R: Send + 'static>(
    ns: &str,
    f: impl FnOnce(&ureq::Agent) -> R + Send + 'static,
) -> R {
    harbormaster_testnet::TestNet::spawn_in(ns, move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        f(&agent)
    })
    .join()
    .unwrap()
}

/// A response's body as text.
pub fn body(resp: ureq::http::Response<ureq::Body>) -> String {
    let mut resp = resp;
    resp.body_mut().read_to_string().unwrap()
}

/// A fresh, empty directory under the system temp dir.
pub fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
