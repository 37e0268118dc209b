//! The real network: a raw IPv4 socket to send SYNs and a filtered packet
//! socket to receive replies. Needs root or CAP_NET_RAW.

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

/// Raw-socket transport for IPv4 SYN probing.
///
/// Sending a probe over veth (or loopback) runs the whole path in the sending
/// thread's softirq: our IP output, the peer's TCP answering with a RST, and the
/// reply's delivery to our packet socket. That kernel work dominates a scan, so
/// large batches are split between the calling thread and a second sender
/// thread, which puts the kernel work on both cores.
#[derive(Debug)]
pub struct RawTransport {
    send: Arc<OwnedFd>,
    recv: OwnedFd,
    worker: SendWorker,
}

/// A thread that sends half of each large batch.
#[derive(Debug)]
struct SendWorker {
    jobs: mpsc::Sender<SendBatch>,
    done: mpsc::Receiver<(SendBatch, io::Result<usize>)>,
    spare: Option<SendBatch>,
}

impl SendWorker {
    fn start(fd: Arc<OwnedFd>) -> SendWorker {
        let (jobs, job_rx) = mpsc::channel::<SendBatch>();
        let (done_tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("harbormaster-send".into())
            .spawn(move || {
                for batch in job_rx {
                    let result = sys::send_batch_v4(&fd, &batch, 0..batch.len());
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
    /// root or CAP_NET_RAW.
    pub fn open() -> Result<RawTransport, ProbeError> {
        let map = |what: &'static str| {
            move |e: io::Error| match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => ProbeError::NotPrivileged,
                _ => ProbeError::Io { what, source: e },
            }
        };
        let send =
            sys::raw_send_socket_v4(SEND_BUFFER).map_err(map("opening the raw send socket"))?;
        let recv = sys::packet_socket_v4(SOURCE_PORT_BASE, RECV_BUFFER)
            .map_err(map("opening the packet receive socket"))?;
        let send = Arc::new(send);
        Ok(RawTransport {
            worker: SendWorker::start(send.clone()),
            send,
            recv,
        })
    }
}

/// True when this process may open raw sockets (root or CAP_NET_RAW).
pub fn raw_sockets_allowed() -> bool {
    sys::raw_send_socket_v4(4096).is_ok()
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
        let Some(mut half) = self.worker.spare.take().filter(|_| n >= SPLIT_AT) else {
            return sys::send_batch_v4(&self.send, batch, 0..n);
        };
        let split = n / 2;
        half.clear();
        for i in 0..split {
            let (dst, bytes) = batch.get(i);
            half.push(dst, |buf| {
                buf[..bytes.len()].copy_from_slice(bytes);
                Ok::<_, io::Error>(bytes.len())
            })?;
        }
        if let Err(mpsc::SendError(back)) = self.worker.jobs.send(half) {
            self.worker.spare = Some(back);
            return sys::send_batch_v4(&self.send, batch, 0..n);
        }
        let ours = sys::send_batch_v4(&self.send, batch, split..n);
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
        Ok(if theirs < split { theirs } else { split + ours })
    }

    fn recv(&mut self, batch: &mut RecvBatch, timeout: Duration) -> io::Result<usize> {
        if !timeout.is_zero() && !sys::wait_readable(&self.recv, timeout)? {
            batch.set_len(0);
            return Ok(0);
        }
        sys::recv_batch(&self.recv, batch)
    }

    fn supports_ipv6(&self) -> bool {
        false
    }

    fn watch(&mut self, addrs: &[IpAddr]) -> io::Result<()> {
        let v4: Vec<std::net::Ipv4Addr> = addrs
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .collect();
        sys::set_filter(&self.recv, &crate::filter::program(SOURCE_PORT_BASE, &v4))
    }

    fn take_drops(&mut self) -> u64 {
        sys::packet_drops(&self.recv).unwrap_or(0)
    }
}
