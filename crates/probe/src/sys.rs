//! Linux system calls the SYN engine needs and the standard library does not
//! offer: batched raw IPv4 and IPv6 sends (`sendmmsg`), batched receives
//! (`recvmmsg`), packet sockets with a kernel filter, and the packet socket's
//! drop counter.
//!
//! This is the only module with `unsafe`. Each block says why it is sound.

#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::transport::{RECV_SNAP, RecvBatch, SendBatch};

/// `SOL_PACKET` option: do not deliver packets this host sends (Linux ≥ 4.20).
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// Installs (or replaces) the socket's classic BPF program.
pub fn set_filter(fd: &OwnedFd, program: &[crate::filter::Insn]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| io::Error::other("BPF program too long"))?,
        // The kernel copies the program and never writes through this pointer.
        filter: program.as_ptr().cast_mut(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

/// Opens an `AF_PACKET`/`SOCK_DGRAM` socket for IPv4 and IPv6 (packets start
/// at the IP header), non-blocking, with the kernel filter of
/// [`crate::filter`]: only ICMP, ICMPv6 and TCP segments addressed to ports at
/// or above `min_port` pass, truncated. Filtering and truncating in the kernel
/// keeps unrelated traffic and payload bytes from ever being copied to us.
///
/// One `ETH_P_ALL` socket rather than one `ETH_P_IP` and one `ETH_P_IPV6`:
/// the engine then waits on one descriptor, reads one drop counter and keeps
/// one filter, and replies of both families arrive in the order the kernel
/// saw them. The cost is that the filter also runs on ARP and other frames; it
/// rejects them after six instructions (the version nibble). Our own
/// outgoing packets, which an `ETH_P_ALL` tap would otherwise also see, are
/// skipped by `PACKET_IGNORE_OUTGOING`.
pub fn packet_socket(min_port: u16, rcvbuf: usize) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call with constant arguments; the returned descriptor is
    // checked and then owned by OwnedFd, which closes it exactly once.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from((libc::ETH_P_ALL as u16).to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };

    set_filter(&fd, &crate::filter::program(min_port, &[]))?;
    // Older kernels lack the option; we then see our own SYNs and the parser drops them.
    let _ = setsockopt(&fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32);
    let size = i32::try_from(rcvbuf).unwrap_or(i32::MAX);
    if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size)?;
    }
    Ok(fd)
}

/// Opens a raw IPv4 socket that sends complete IP packets (`IPPROTO_RAW`
/// implies `IP_HDRINCL`), non-blocking, with a large send buffer.
pub fn raw_send_socket_v4(sndbuf: usize) -> io::Result<OwnedFd> {
    raw_send_socket(libc::AF_INET, sndbuf)
}

/// Opens a raw IPv6 socket that sends complete IPv6 packets, non-blocking,
/// with a large send buffer.
///
/// On Linux an `AF_INET6` socket of protocol `IPPROTO_RAW` starts with the
/// header-included flag set (`inet6_create` sets `hdrincl` for it), so the
/// kernel sends our IPv6 header as built — source address, hop limit, payload
/// length — and adds nothing; `IPV6_HDRINCL` (Linux ≥ 4.5) is set as well to
/// say so explicitly. crates/probe/tests/ipv6.rs checks it on the wire: a
/// target answers our SYNs and pings only if our header reached it as built.
pub fn raw_send_socket_v6(sndbuf: usize) -> io::Result<OwnedFd> {
    let fd = raw_send_socket(libc::AF_INET6, sndbuf)?;
    let _ = setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_HDRINCL, &1i32);
    Ok(fd)
}

fn raw_send_socket(family: libc::c_int, sndbuf: usize) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; result checked and owned below.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let size = i32::try_from(sndbuf).unwrap_or(i32::MAX);
    if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &size).is_err() {
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &size)?;
    }
    Ok(fd)
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: value points to a live T for the duration of the call and the length
    // passed is exactly size_of::<T>(); the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends the unsent probes `range` of `batch` with one `sendmmsg` call, on
/// a raw socket of the probes' family: every probe in the range must be IPv4
/// (for a socket of [`raw_send_socket_v4`]) or every one IPv6 (for
/// [`raw_send_socket_v6`]); a mixed range is refused. Returns how many the
/// kernel took, from the start of the range; a full queue (EAGAIN, ENOBUFS) is
/// not an error, it just sends fewer.
pub fn send_batch(
    fd: &OwnedFd,
    batch: &SendBatch,
    range: std::ops::Range<usize>,
) -> io::Result<usize> {
    let first = range.start;
    let n = range.end.min(batch.len()).saturating_sub(first).min(1024);
    if n == 0 {
        return Ok(0);
    }
    let v6 = batch.get(first).0.is_ipv6();
    // Both vectors are sized up front and never grow, so the pointers taken
    // into them below stay valid.
    let mut addrs4: Vec<libc::sockaddr_in> = Vec::with_capacity(if v6 { 0 } else { n });
    let mut addrs6: Vec<libc::sockaddr_in6> = Vec::with_capacity(if v6 { n } else { 0 });
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(n);
    for i in first..first + n {
        let (dst, bytes) = batch.get(i);
        match dst {
            IpAddr::V4(v4) if !v6 => {
                // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
                let mut sa: libc::sockaddr_in = unsafe { zeroed() };
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
                addrs4.push(sa);
            }
            IpAddr::V6(a) if v6 => {
                // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
                let mut sa: libc::sockaddr_in6 = unsafe { zeroed() };
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                // sin6_port stays 0: a raw IPPROTO_RAW socket takes the protocol
                // from the header we built.
                sa.sin6_addr.s6_addr = a.octets();
                addrs6.push(sa);
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "IPv4 and IPv6 probes in one raw-socket send",
                ));
            }
        }
        iovs.push(libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        });
    }
    let mut msgs: Vec<libc::mmsghdr> = (0..n)
        .map(|i| {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            let mut m: libc::mmsghdr = unsafe { zeroed() };
            if v6 {
                m.msg_hdr.msg_name = (&mut addrs6[i] as *mut libc::sockaddr_in6).cast();
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            } else {
                m.msg_hdr.msg_name = (&mut addrs4[i] as *mut libc::sockaddr_in).cast();
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            m.msg_hdr.msg_iov = &mut iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: msgs, addrs4/addrs6 and iovs live until the call returns and are not
    // resized after the pointers into them were taken; every msg_name points at an
    // address of the size given in msg_namelen, and each iovec points into `batch`,
    // which is borrowed for the whole call. The kernel only reads the buffers.
    let rc = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if rc >= 0 {
        return Ok(rc as usize);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => Ok(0),
        _ => Err(e),
    }
}

/// Waits up to `timeout` for `fd` to become readable, with microsecond precision.
pub fn wait_readable(fd: &OwnedFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: pfd and ts are live locals; ppoll reads ts and writes pfd.revents only;
    // a null signal mask means "do not change it".
    let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    match rc {
        r if r > 0 => Ok(true),
        0 => Ok(false),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Receives as many packets as are queued, up to the batch's capacity, without
/// waiting. Packets longer than [`RECV_SNAP`] are truncated.
pub fn recv_batch(fd: &OwnedFd, batch: &mut RecvBatch) -> io::Result<usize> {
    let cap = batch.capacity();
    let (bytes, lens) = batch.buffers_mut();
    let mut iovs: Vec<libc::iovec> = bytes
        .chunks_exact_mut(RECV_SNAP)
        .take(cap)
        .map(|c| libc::iovec {
            iov_base: c.as_mut_ptr().cast(),
            iov_len: RECV_SNAP,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            let mut m: libc::mmsghdr = unsafe { zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: every iovec points into `bytes`, a distinct RECV_SNAP-sized chunk that is
    // mutably borrowed for the whole call; msgs and iovs outlive the call; a null
    // timeout with MSG_DONTWAIT returns at once.
    let rc = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        batch.set_len(0);
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
            _ => Err(e),
        };
    }
    let n = rc as usize;
    for (len, m) in lens.iter_mut().zip(&msgs).take(n) {
        *len = (m.msg_len as usize).min(RECV_SNAP);
    }
    batch.set_len(n);
    Ok(n)
}

/// Packets the kernel dropped on this packet socket since the last call
/// (reading the statistics resets them).
pub fn packet_drops(fd: &OwnedFd) -> io::Result<u64> {
    let mut stats = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: stats and len are live locals of the sizes the kernel expects for
    // PACKET_STATISTICS; the kernel writes at most len bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(u64::from(stats.tp_drops))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The soft limit on open files (RLIMIT_NOFILE).
pub fn open_file_limit() -> io::Result<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a live local that getrlimit fills in.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc == 0 {
        Ok(usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX))
    } else {
        Err(io::Error::last_os_error())
    }
}
