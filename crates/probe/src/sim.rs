//! A simulated network for testing the engine without privileges or real
//! packets: hosts with open, closed, filtered (ICMP admin-prohibited) and
//! dropped ports, random loss in each direction, a fixed RTT, and virtual time
//! that advances only while the engine waits. Runs are deterministic for a seed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use harbormaster_wire::{Reply, TcpFlags};

use crate::transport::{RecvBatch, SendBatch, Transport};

/// What a simulated host does with each port.
#[derive(Debug, Clone, Default)]
pub struct SimHost {
    /// Ports that answer SYN-ACK.
    pub open: HashSet<u16>,
    /// Ports that answer ICMP admin-prohibited (type 3 code 13).
    pub filtered: HashSet<u16>,
    /// Ports whose probes are dropped.
    pub dropped: HashSet<u16>,
    /// Drop every probe (a fully stealthed host).
    pub silent: bool,
    /// Answer with acknowledgement numbers that do not match the probe, as a
    /// spoofer guessing at our sequence numbers would.
    pub wrong_ack: bool,
    /// Answer ICMP echo requests.
    pub answers_ping: bool,
    /// When first probed, send the scanner a packet of its own (a UDP datagram
    /// to port 137), as "counter-probing" personal firewalls do.
    pub counter_probe: bool,
}

/// Counters of what the simulated network carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Probes the engine sent.
    pub probes: u64,
    /// Probes lost on the way out.
    pub lost_out: u64,
    /// Replies lost on the way back.
    pub lost_in: u64,
    /// Virtual time of the first probe, from the network's creation.
    pub first_probe: Option<Duration>,
    /// Virtual time of the engine's latest wait on the network.
    pub last_wait: Duration,
}

/// A simulated IPv4 network seen from `source`.
#[derive(Debug)]
pub struct SimNetwork {
    source: Ipv4Addr,
    hosts: HashMap<IpAddr, SimHost>,
    loss_out: f64,
    loss_in: f64,
    rtt: Duration,
    start: Instant,
    now: Duration,
    seq: u64,
    in_transit: BinaryHeap<Reverse<(Duration, u64, Vec<u8>)>>,
    rng: u64,
    stats: std::sync::Arc<std::sync::Mutex<SimStats>>,
}

impl SimNetwork {
    /// A network where the scanner is `source`, replies take `rtt`, and each
    /// direction loses packets with the given probabilities.
    pub fn new(source: Ipv4Addr, rtt: Duration, loss_out: f64, loss_in: f64, seed: u64) -> Self {
        SimNetwork {
            source,
            hosts: HashMap::new(),
            loss_out,
            loss_in,
            rtt,
            start: Instant::now(),
            now: Duration::ZERO,
            seq: 0,
            in_transit: BinaryHeap::new(),
            rng: seed | 1,
            stats: Default::default(),
        }
    }

    /// A loss-free network with a 1 ms round trip from 198.18.0.1 to one
    /// host, `host`, at [`SimNetwork::LAN_TARGET`].
    pub fn lan(host: SimHost) -> Self {
        SimNetwork::new(
            Ipv4Addr::new(198, 18, 0, 1),
            Duration::from_millis(1),
            0.0,
            0.0,
            7,
        )
        .host(Self::LAN_TARGET, host)
    }

    /// The host's address on [`SimNetwork::lan`].
    pub const LAN_TARGET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// Adds a host.
    pub fn host(mut self, addr: Ipv4Addr, host: SimHost) -> Self {
        self.hosts.insert(IpAddr::V4(addr), host);
        self
    }

    /// A handle on the counters, readable while the engine owns the network.
    pub fn stats(&self) -> std::sync::Arc<std::sync::Mutex<SimStats>> {
        self.stats.clone()
    }

    /// The scanner's address.
    pub fn source(&self) -> IpAddr {
        IpAddr::V4(self.source)
    }

    fn chance(&mut self, p: f64) -> bool {
        // xorshift64*: deterministic and good enough for loss decisions.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn deliver(&mut self, packet: Vec<u8>) {
        if self.chance(self.loss_in) {
            self.stats.lock().unwrap().lost_in += 1;
            return;
        }
        self.seq += 1;
        let at = self.now + self.rtt;
        self.in_transit.push(Reverse((at, self.seq, packet)));
    }

    fn respond(&mut self, probe: &[u8]) {
        self.stats.lock().unwrap().probes += 1;
        if self.chance(self.loss_out) {
            self.stats.lock().unwrap().lost_out += 1;
            return;
        }
        if let Some(reply) = self.echo_reply(probe) {
            self.deliver(reply);
            return;
        }
        let Ok(Reply::Tcp(syn)) = harbormaster_wire::parse_reply(probe) else {
            return;
        };
        if let (IpAddr::V4(dst), Some(host)) = (syn.dst, self.hosts.get_mut(&syn.dst))
            && std::mem::take(&mut host.counter_probe)
        {
            let mut p = ipv4_header(dst, self.source, 17, 8);
            p.extend_from_slice(&[0, 137, 0, 137, 0, 8, 0, 0]);
            self.deliver(p);
        }
        if !syn.flags.contains(TcpFlags::SYN) {
            return;
        }
        let (IpAddr::V4(dst), Some(host)) = (syn.dst, self.hosts.get(&syn.dst)) else {
            return;
        };
        let port = syn.dst_port;
        let reply = if host.silent || host.dropped.contains(&port) {
            return;
        } else if host.filtered.contains(&port) {
            icmp_unreachable(dst, self.source, 13, probe)
        } else {
            let flags = if host.open.contains(&port) {
                TcpFlags::SYN | TcpFlags::ACK
            } else {
                TcpFlags::RST | TcpFlags::ACK
            };
            let ack = syn.seq.wrapping_add(if host.wrong_ack { 7 } else { 1 });
            tcp_segment(
                dst,
                self.source,
                port,
                syn.src_port,
                0x1000_0000,
                ack,
                flags,
            )
        };
        self.deliver(reply);
    }
}

impl Transport for SimNetwork {
    fn now(&self) -> Instant {
        self.start + self.now
    }

    fn source_for(&mut self, _dst: IpAddr) -> io::Result<IpAddr> {
        Ok(IpAddr::V4(self.source))
    }

    fn send(&mut self, batch: &SendBatch) -> io::Result<usize> {
        if !batch.is_empty() {
            let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
            stats.first_probe.get_or_insert(self.now);
        }
        for i in 0..batch.len() {
            let (_, bytes) = batch.get(i);
            let bytes = bytes.to_vec();
            self.respond(&bytes);
        }
        Ok(batch.len())
    }

    fn recv(&mut self, batch: &mut RecvBatch, timeout: Duration) -> io::Result<usize> {
        if let Some(Reverse((at, _, _))) = self.in_transit.peek() {
            if *at > self.now {
                // Nothing due yet: let virtual time pass, up to the timeout.
                self.now = (*at).min(self.now + timeout);
            }
        } else {
            self.now += timeout;
        }
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_wait = self.now;
        let mut n = 0;
        while n < batch.capacity() {
            match self.in_transit.peek() {
                Some(Reverse((at, _, _))) if *at <= self.now => {
                    let Reverse((_, _, packet)) = self.in_transit.pop().unwrap();
                    batch.fill(n, &packet);
                    n += 1;
                }
                _ => break,
            }
        }
        batch.set_len(n);
        Ok(n)
    }
}

impl SimNetwork {
    /// The reply to an ICMP echo request from a host that answers pings.
    fn echo_reply(&self, probe: &[u8]) -> Option<Vec<u8>> {
        if probe.len() < 28 || probe[9] != 1 || probe[20] != 8 {
            return None;
        }
        let dst = Ipv4Addr::new(probe[16], probe[17], probe[18], probe[19]);
        if !self.hosts.get(&IpAddr::V4(dst))?.answers_ping {
            return None;
        }
        let icmp = &probe[20..];
        let mut p = ipv4_header(dst, self.source, 1, icmp.len());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(&icmp[4..]);
        Some(p)
    }
}

fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload_len: usize) -> Vec<u8> {
    let total = 20 + payload_len;
    let mut h = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        protocol,
        0,
        0,
    ];
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h
}

/// A TCP segment (checksums left zero: the engine authenticates by cookie).
fn tcp_segment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
) -> Vec<u8> {
    let mut p = ipv4_header(src, dst, 6, 20);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(&[0x50, flags.0, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

/// An ICMP destination unreachable quoting the probe's IP header and 8 bytes.
fn icmp_unreachable(src: Ipv4Addr, dst: Ipv4Addr, code: u8, probe: &[u8]) -> Vec<u8> {
    let quoted = &probe[..probe.len().min(28)];
    let mut p = ipv4_header(src, dst, 1, 8 + quoted.len());
    p.extend_from_slice(&[3, code, 0, 0, 0, 0, 0, 0]);
    p.extend_from_slice(quoted);
    p
}
