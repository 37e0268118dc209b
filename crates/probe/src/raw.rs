//! The real network: raw IPv4 and IPv6 sockets to send SYNs and pings and
//! one filtered packet socket to receive replies of both families. Needs root
//! or CAP_NET_RAW.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::engine::SOURCE_PORT_BASE;
use crate::error::ProbeError;
use crate::sys;
use crate::transport::{RecvBatch, SendBatch, Transport};

/// Kernel buffer for replies: room for tens of thousands of queued replies, so
/// a burst is never lost on our side.
const RECV_BUFFER: usize = 32 << 20;
const SEND_BUFFER: usize = 4 << 20;

/// Below this many probes a batch is sent from one thread.
const SPLIT_AT: usize = 64;

/// Raw-socket transport for SYN probing over IPv4 and IPv6.
///
/// Sending a probe over veth (or loopback) runs the whole path in the sending
/// thread's softirq: our IP output, the peer's TCP answering with a RST, and the
/// reply's delivery to our packet socket. That kernel work dominates a scan, so
/// large batches are split between the calling thread and a second sender
/// thread, which puts the kernel work on both cores.
///
/// A batch may mix IPv4 and IPv6 probes (scans of both families share the
/// engine); each run of one family goes to that family's raw socket.
#[derive(Debug)]
pub struct RawTransport {
    send: Arc<SendSockets>,
    recv: OwnedFd,
    worker: SendWorker,
}

/// The raw send sockets, one per family. IPv6 is optional: a host without
/// IPv6 (or with it disabled) still probes IPv4.
#[derive(Debug)]
struct SendSockets {
    v4: OwnedFd,
    v6: Option<OwnedFd>,
}

impl SendSockets {
    /// Sends `range` of `batch`, all of one family (`v6`).
    fn send(
        &self,
        v6: bool,
        batch: &SendBatch,
        range: std::ops::Range<usize>,
    ) -> io::Result<usize> {
        let fd = if v6 {
            self.v6.as_ref().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "no IPv6 raw socket (IPv6 is unavailable on this host)",
                )
            })?
        } else {
            &self.v4
        };
        sys::send_batch(fd, batch, range)
    }
}

/// A thread that sends half of each large batch.
#[derive(Debug)]
struct SendWorker {
    jobs: mpsc::Sender<SendBatch>,
    done: mpsc::Receiver<(SendBatch, io::Result<usize>)>,
    spare: Option<SendBatch>,
}

impl SendWorker {
    fn start(sockets: Arc<SendSockets>) -> SendWorker {
        let (jobs, job_rx) = mpsc::channel::<SendBatch>();
        let (done_tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("harbormaster-send".into())
            .spawn(move || {
                for batch in job_rx {
                    // Jobs are always one family (see `RawTransport::send_run`).
                    let v6 = !batch.is_empty() && batch.get(0).0.is_ipv6();
                    let result = sockets.send(v6, &batch, 0..batch.len());
                    if done_tx.send((batch, result)).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning the send thread");
        SendWorker {
            jobs,
            done,
            spare: Some(SendBatch::new(crate::transport::MAX_BATCH)),
        }
    }
}

impl RawTransport {
    /// Opens the sockets. Fails with [`ProbeError::NotPrivileged`] without
    /// root or CAP_NET_RAW. The IPv6 send socket is opened when the host has
    /// IPv6; without it the transport probes IPv4 only
    /// ([`Transport::supports_ipv6`] is false).
    pub fn open() -> Result<RawTransport, ProbeError> {
        let map = |what: &'static str| {
            move |e: io::Error| match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => ProbeError::NotPrivileged,
                _ => ProbeError::Io { what, source: e },
            }
        };
        let v4 =
            sys::raw_send_socket_v4(SEND_BUFFER).map_err(map("opening the raw send socket"))?;
        // EAFNOSUPPORT when the kernel has no IPv6; anything else (a privilege
        // error) would have failed the IPv4 socket already.
        let v6 = sys::raw_send_socket_v6(SEND_BUFFER).ok();
        let recv = sys::packet_socket(SOURCE_PORT_BASE, RECV_BUFFER)
            .map_err(map("opening the packet receive socket"))?;
        let send = Arc::new(SendSockets { v4, v6 });
        Ok(RawTransport {
            worker: SendWorker::start(send.clone()),
            send,
            recv,
        })
    }

    /// Sends `batch[start..end]`, all of one family, splitting a large run
    /// with the send thread. Returns how many were sent from `start`.
    fn send_run(&mut self, batch: &SendBatch, start: usize, end: usize) -> io::Result<usize> {
        let n = end - start;
        let v6 = batch.get(start).0.is_ipv6();
        // Only a large run takes the spare batch: taking it for a small one
        // and dropping it (as `take().filter(..)` would) left every later
        // batch to one core, which cost a third of a LAN sweep's time.
        let spare = if n >= SPLIT_AT {
            self.worker.spare.take()
        } else {
            None
        };
        let Some(mut half) = spare else {
            return self.send.send(v6, batch, start..end);
        };
        let split = start + n / 2;
        half.clear();
        for i in start..split {
            let (dst, bytes) = batch.get(i);
            half.push(dst, |buf| {
                buf[..bytes.len()].copy_from_slice(bytes);
                Ok::<_, io::Error>(bytes.len())
            })?;
        }
        if let Err(mpsc::SendError(back)) = self.worker.jobs.send(half) {
            self.worker.spare = Some(back);
            return self.send.send(v6, batch, start..end);
        }
        let ours = self.send.send(v6, batch, split..end);
        let (back, theirs) = self
            .worker
            .done
            .recv()
            .map_err(|_| io::Error::other("the send thread stopped"))?;
        self.worker.spare = Some(back);
        let (theirs, ours) = (theirs?, ours?);
        // The engine resends whatever follows the first unsent probe, so report a
        // prefix: if the first half fell short, the second half goes again (a
        // duplicate probe only produces a duplicate answer, which is dropped).
        let first = split - start;
        Ok(if theirs < first { theirs } else { first + ours })
    }
}

/// True when this process may open raw sockets (root or CAP_NET_RAW).
pub fn raw_sockets_allowed() -> bool {
    sys::raw_send_socket_v4(4096).is_ok()
}

/// True when this process may open a raw IPv6 socket: raw sockets are
/// allowed and the host has IPv6 (a [`RawTransport`] opened now would
/// probe IPv6 targets).
pub fn raw_ipv6_available() -> bool {
    sys::raw_send_socket_v6(4096).is_ok()
}

/// The local address the system routes through to reach `dst`, found by
/// connecting a UDP socket (which sends nothing).
pub fn source_address(dst: IpAddr) -> io::Result<IpAddr> {
    let bind: SocketAddr = match dst {
        IpAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
        IpAddr::V6(_) => "[::]:0".parse().expect("literal"),
    };
    let s = UdpSocket::bind(bind)?;
    s.connect(SocketAddr::new(dst, 9))?;
    Ok(s.local_addr()?.ip())
}

impl Transport for RawTransport {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn source_for(&mut self, dst: IpAddr) -> io::Result<IpAddr> {
        source_address(dst)
    }

    fn send(&mut self, batch: &SendBatch) -> io::Result<usize> {
        let n = batch.len();
        let mut sent = 0;
        while sent < n {
            // The run of probes of one family from `start` on.
            let start = sent;
            let v6 = batch.get(start).0.is_ipv6();
            let end = (start + 1..n)
                .find(|&i| batch.get(i).0.is_ipv6() != v6)
                .unwrap_or(n);
            let took = match self.send_run(batch, start, end) {
                Ok(k) => k,
                // Report what went out; the error comes back on the next call,
                // with the failing probe first (the engine blames its target).
                Err(_) if start > 0 => return Ok(start),
                Err(e) => return Err(e),
            };
            sent += took;
            if took < end - start {
                break;
            }
        }
        Ok(sent)
    }

    fn recv(&mut self, batch: &mut RecvBatch, timeout: Duration) -> io::Result<usize> {
        if !timeout.is_zero() && !sys::wait_readable(&self.recv, timeout)? {
            batch.set_len(0);
            return Ok(0);
        }
        sys::recv_batch(&self.recv, batch)
    }

    fn supports_ipv6(&self) -> bool {
        self.send.v6.is_some()
    }

    fn watch(&mut self, addrs: &[IpAddr]) -> io::Result<()> {
        sys::set_filter(&self.recv, &crate::filter::program(SOURCE_PORT_BASE, addrs))
    }

    fn take_drops(&mut self) -> u64 {
        sys::packet_drops(&self.recv).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cookie::CookieKey;
    use crate::module::{ProbeModule, TcpSyn};

    /// A batch below the split size once took the send thread's spare
    /// batch and dropped it, so every later batch went out from one thread:
    /// a LAN sweep took 0.8 s instead of 0.5 s. Loopback only.
    #[test]
    fn small_batches_leave_the_send_thread_its_spare() {
        if !raw_sockets_allowed() {
            assert!(
                std::env::var_os("HARBORMASTER_REQUIRE_NETNS").is_none(),
                "raw sockets are required here"
            );
            eprintln!("skipped: raw sockets need root or CAP_NET_RAW");
            return;
        }
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let syn = TcpSyn::new(lo, lo, 64, CookieKey::random()).unwrap();
        let mut t = RawTransport::open().unwrap();
        for n in [1, SPLIT_AT - 1, SPLIT_AT, 2 * SPLIT_AT, 3] {
            let mut batch = SendBatch::new(crate::transport::MAX_BATCH);
            for i in 0..n {
                // To the discard port on loopback: the kernel answers RST.
                batch
                    .push(lo, |buf| {
                        syn.write(buf, SOURCE_PORT_BASE + (i % 16) as u16, 9)
                    })
                    .unwrap();
            }
            assert_eq!(t.send(&batch).unwrap(), n, "batch of {n}");
            assert!(t.worker.spare.is_some(), "spare kept after a batch of {n}");
        }
    }
}
