//! The real network: a raw IPv4 socket to send SYNs and a filtered packet
//! socket to receive replies. Needs root or CAP_NET_RAW.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::engine::SOURCE_PORT_BASE;
use crate::error::ProbeError;
use crate::sys;
use crate::transport::{RecvBatch, SendBatch, Transport};

/// Kernel buffer for replies: room for tens of thousands of queued replies, so
/// a burst is never lost on our side.
const RECV_BUFFER: usize = 32 << 20;
const SEND_BUFFER: usize = 4 << 20;

/// Raw-socket transport for IPv4 SYN probing.
#[derive(Debug)]
pub struct RawTransport {
    send: OwnedFd,
    recv: OwnedFd,
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
        Ok(RawTransport { send, recv })
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
        sys::send_batch_v4(&self.send, batch)
    }

    fn recv(&mut self, batch: &mut RecvBatch, timeout: Duration) -> io::Result<usize> {
        if !timeout.is_zero() && !sys::wait_readable(&self.recv, timeout)? {
            batch.set_len(0);
            return Ok(0);
        }
        sys::recv_batch(&self.recv, batch)
    }

    fn take_drops(&mut self) -> u64 {
        sys::packet_drops(&self.recv).unwrap_or(0)
    }
}
