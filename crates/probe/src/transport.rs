//! The packet I/O an engine runs on: real raw sockets (`raw`) or a simulated
//! network (`sim`). Keeping I/O behind this trait lets the whole engine run
//! against a scripted network in tests, with virtual time.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most probes the engine puts in one batch.
pub const MAX_BATCH: usize = 256;
/// Largest probe we build: a UDP payload probe fits in IPv6's minimum MTU
/// (1,280 bytes), so it is never fragmented on any path.
pub const MAX_PROBE: usize = 1280;
/// Bytes of each received packet we keep: a whole packet on any common
/// link (a UDP reply is judged by its payload, and a truncated datagram would
/// fail its length checks); TCP and ICMP replies are far shorter.
pub const RECV_SNAP: usize = 2048;

/// Sends and receives whole IP packets.
pub trait Transport: Send + 'static {
    /// The current time. A simulated network returns virtual time.
    fn now(&self) -> Instant;
    /// The local address the system would use to reach `dst`.
    fn source_for(&mut self, dst: IpAddr) -> io::Result<IpAddr>;
    /// Sends a prefix of `batch`; returns its length. Transient local shortages
    /// (a full send queue) send fewer rather than fail.
    fn send(&mut self, batch: &SendBatch) -> io::Result<usize>;
    /// Receives up to `batch.capacity()` packets, waiting at most `timeout`
    /// for the first one. Returns how many arrived.
    fn recv(&mut self, batch: &mut RecvBatch, timeout: Duration) -> io::Result<usize>;
    /// Whether this transport can send to IPv6 targets.
    fn supports_ipv6(&self) -> bool {
        true
    }

    /// Also deliver every packet from `addrs` (scans that watch for unsolicited
    /// traffic); replaces the previous list.
    fn watch(&mut self, addrs: &[IpAddr]) -> io::Result<()> {
        let _ = addrs;
        Ok(())
    }

    /// Replies the kernel dropped because our receive queue was full, since the
    /// last call. A definite congestion signal.
    fn take_drops(&mut self) -> u64 {
        0
    }
}

/// Probes waiting to be sent, stored in fixed slots to avoid per-packet allocation.
#[derive(Debug)]
pub struct SendBatch {
    bytes: Vec<u8>,
    lens: Vec<u16>,
    dsts: Vec<IpAddr>,
    start: usize,
    capacity: usize,
}

impl SendBatch {
    /// Room for `capacity` probes.
    pub fn new(capacity: usize) -> SendBatch {
        SendBatch {
            bytes: vec![0; capacity * MAX_PROBE],
            lens: Vec::with_capacity(capacity),
            dsts: Vec::with_capacity(capacity),
            start: 0,
            capacity,
        }
    }

    /// Probes not yet sent.
    pub fn len(&self) -> usize {
        self.lens.len() - self.start
    }

    /// True when everything has been sent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Free slots.
    pub fn room(&self) -> usize {
        self.capacity - self.lens.len()
    }

    /// Appends a probe to `dst`, written by `write` into a slot; `write` returns its length.
    pub fn push<E>(
        &mut self,
        dst: IpAddr,
        write: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<(), E> {
        let i = self.lens.len();
        assert!(i < self.capacity, "SendBatch overflow");
        let slot = &mut self.bytes[i * MAX_PROBE..(i + 1) * MAX_PROBE];
        let n = write(slot)?;
        // `write` got a MAX_PROBE-byte slot, so its length fits in 16 bits.
        self.lens.push(n.min(MAX_PROBE) as u16);
        self.dsts.push(dst);
        Ok(())
    }

    /// The `i`-th unsent probe.
    pub fn get(&self, i: usize) -> (IpAddr, &[u8]) {
        let j = self.start + i;
        (
            self.dsts[j],
            &self.bytes[j * MAX_PROBE..j * MAX_PROBE + usize::from(self.lens[j])],
        )
    }

    /// Empties the batch.
    pub fn clear(&mut self) {
        self.start = 0;
        self.lens.clear();
        self.dsts.clear();
    }

    /// Marks the first `n` unsent probes as sent; resets when all are.
    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.lens.len() {
            self.start = 0;
            self.lens.clear();
            self.dsts.clear();
        }
    }
}

/// Buffers for a batch of received packets.
#[derive(Debug)]
pub struct RecvBatch {
    bytes: Vec<u8>,
    lens: Vec<usize>,
    count: usize,
}

impl RecvBatch {
    /// Room for `capacity` packets.
    pub fn new(capacity: usize) -> RecvBatch {
        RecvBatch {
            bytes: vec![0; capacity * RECV_SNAP],
            lens: vec![0; capacity],
            count: 0,
        }
    }

    /// How many packets fit.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Packets received by the last `recv`.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the last `recv` got nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `i`-th received packet (truncated to [`RECV_SNAP`] bytes).
    pub fn packet(&self, i: usize) -> &[u8] {
        &self.bytes[i * RECV_SNAP..i * RECV_SNAP + self.lens[i].min(RECV_SNAP)]
    }

    /// Mutable buffers and lengths, for a transport to fill; then call `set_len`.
    pub fn buffers_mut(&mut self) -> (&mut [u8], &mut [usize]) {
        (&mut self.bytes, &mut self.lens)
    }

    /// Records how many packets a transport filled in.
    pub fn set_len(&mut self, count: usize) {
        self.count = count.min(self.lens.len());
    }

    /// Copies `packet` into slot `i` (used by transports without scatter I/O).
    pub fn fill(&mut self, i: usize, packet: &[u8]) {
        let n = packet.len().min(RECV_SNAP);
        self.bytes[i * RECV_SNAP..i * RECV_SNAP + n].copy_from_slice(&packet[..n]);
        self.lens[i] = n;
    }
}
