//! The event loop: one thread that owns the transport and every scan.
//! It drains replies and routes each to its scan by the local port it
//! concerns ([`local_port`]), expires probes, fills one send batch shared
//! fairly between scans, and reports finished scans.

use std::net::IpAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harbormaster_wire::Reply;

use super::api::{EngineConfig, ScanEvent};
use super::scan::Scan;
use super::{Command, MAX_SCANS, SOURCE_PORT_BASE, TRIES_PER_BLOCK};
use crate::module::local_port;
use crate::timing::{RateBudget, RateLimiter};
use crate::transport::{MAX_BATCH as BATCH, RecvBatch, SendBatch, Transport};

/// Receive batches drained per loop turn before sending again.
const RECV_ROUNDS: usize = 8;
/// Longest idle wait, so new scans and cancellations are picked up promptly.
const IDLE_WAIT: Duration = Duration::from_millis(5);

struct Loop<T> {
    transport: T,
    scans: Vec<Option<Box<Scan>>>,
    rate: Option<RateLimiter>,
    shared: Option<RateBudget>,
    blocks: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
    next_turn: usize,
    /// Addresses the transport currently passes for watching.
    watched: Vec<IpAddr>,
}

pub(super) fn run<T: Transport>(
    transport: T,
    config: EngineConfig,
    commands: mpsc::Receiver<Command>,
    blocks: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
) {
    let mut l = Loop {
        transport,
        scans: (0..MAX_SCANS).map(|_| None).collect(),
        rate: config.max_rate.map(RateLimiter::new),
        shared: config.shared_budget.clone(),
        blocks,
        next_turn: 0,
        watched: Vec::new(),
    };
    let mut tx = SendBatch::new(BATCH);
    let mut rx = RecvBatch::new(BATCH);
    loop {
        // 1. Commands. Block only when there is nothing else to do.
        loop {
            let idle = l.scans.iter().all(Option::is_none);
            let cmd = if idle {
                match commands.recv() {
                    Ok(c) => c,
                    Err(_) => return,
                }
            } else {
                match commands.try_recv() {
                    Ok(c) => c,
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => Command::Shutdown,
                }
            };
            match cmd {
                Command::Submit(scan) => {
                    let b = usize::from(scan.block);
                    if scan.ports.is_empty() {
                        l.end(b, Some(scan), false, None);
                    } else {
                        l.scans[b] = Some(scan);
                    }
                }
                Command::Cancel(b, id) => {
                    let b = usize::from(b);
                    if l.scans[b].as_ref().is_some_and(|s| s.id == id) {
                        let scan = l.scans[b].take();
                        l.end(b, scan, true, None);
                    }
                }
                Command::Shutdown => {
                    for b in 0..MAX_SCANS {
                        if let Some(scan) = l.scans[b].take() {
                            l.end(b, Some(scan), true, None);
                        }
                    }
                    return;
                }
            }
        }

        // 2. Replies.
        let mut received = 0;
        for _ in 0..RECV_ROUNDS {
            match l.transport.recv(&mut rx, Duration::ZERO) {
                Ok(n) => {
                    l.handle(&rx);
                    received += n;
                    if n < rx.capacity() {
                        break;
                    }
                }
                Err(e) => return l.fail(e),
            }
        }
        if l.transport.take_drops() > 0 {
            for scan in l.scans.iter_mut().flatten() {
                scan.cc.cut();
            }
        }

        // 3. Timeouts.
        let now = l.transport.now();
        for scan in l.scans.iter_mut().flatten() {
            scan.expire(now);
        }

        // 4. Send: share one batch fairly between the scans that have work.
        if tx.is_empty() {
            l.fill(now, &mut tx);
        }
        let mut sent = 0;
        if !tx.is_empty() {
            match l.transport.send(&tx) {
                Ok(n) => {
                    tx.consume(n);
                    sent = n;
                }
                Err(e) if is_target_error(&e) => {
                    // The first unsent probe's target cannot be reached from here (no
                    // route, or our own firewall refuses): end the scans of that target
                    // with the error, rather than calling its ports stealth.
                    let (dst, _) = tx.get(0);
                    tx.consume(1);
                    let msg = format!("cannot send to {dst}: {e}");
                    for b in 0..MAX_SCANS {
                        if l.scans[b].as_ref().is_some_and(|s| s.target == dst) {
                            let scan = l.scans[b].take();
                            l.end(b, scan, true, Some(msg.clone()));
                        }
                    }
                }
                Err(e) => return l.fail(e),
            }
        }

        // 5. Finished scans.
        for b in 0..MAX_SCANS {
            if l.scans[b].as_ref().is_some_and(|s| s.finished(now)) {
                let scan = l.scans[b].take();
                l.end(b, scan, false, None);
            }
        }

        if let Err(e) = l.update_watch() {
            return l.fail(e);
        }

        // 6. Idle: wait for a reply, but not past the next timeout.
        if sent == 0 && received == 0 {
            let now = l.transport.now();
            let mut wait = IDLE_WAIT;
            for scan in l.scans.iter().flatten() {
                if let Some(d) = scan.next_deadline() {
                    wait = wait.min(d.saturating_duration_since(now));
                }
                if scan.has_work() {
                    // A scan sends when both its pacer and its rate cap allow.
                    wait = wait.min(scan.send_wait());
                }
            }
            if let Some(r) = &l.rate {
                wait = wait.min(r.wait().max(Duration::from_micros(50)));
            }
            if let Some(b) = &l.shared {
                wait = wait.min(b.wait(now).max(Duration::from_micros(50)));
            }
            match l.transport.recv(&mut rx, wait) {
                Ok(_) => l.handle(&rx),
                Err(e) => return l.fail(e),
            }
        }
    }
}

impl<T: Transport> Loop<T> {
    fn handle(&mut self, rx: &RecvBatch) {
        let now = self.transport.now();
        for i in 0..rx.len() {
            let packet = rx.packet(i);
            let Ok(reply) = harbormaster_wire::parse_reply(packet) else {
                continue;
            };
            // Anything addressed to our source ports is probe traffic (valid, late,
            // duplicated or forged), whatever the protocol; the scan's module sorts
            // it out.
            if let Some(scan) = local_port(&reply).and_then(|port| self.scan_for(port)) {
                scan.on_reply(&reply, packet, now);
                continue;
            }
            match reply {
                Reply::Tcp(r) => {
                    self.unsolicited(r.src, Some((r.src_port, r.dst_port)), || {
                        format!("tcp {}->{} [{}]", r.src_port, r.dst_port, r.flags)
                    });
                }
                Reply::IcmpError(e) => {
                    self.unsolicited(e.from, None, || format!("icmp {}", e.kind.label()));
                }
                Reply::EchoReply(e) => {
                    let mut ours = false;
                    for scan in self.scans.iter_mut().flatten() {
                        if scan.echo().is_some_and(|echo| echo.matches(&e)) {
                            scan.report.ping_replies += 1;
                            ours = true;
                        }
                    }
                    if !ours {
                        self.unsolicited(e.from, None, || "icmp echo reply".to_string());
                    }
                }
                // A datagram to a group (SSDP or mDNS announcements on a LAN)
                // was not sent to us: it is not a packet aimed at the scanner.
                Reply::Udp(u) if is_group(u.dst) => {}
                Reply::Udp(u) => {
                    self.unsolicited(u.src, None, || {
                        format!("udp {}->{}", u.src_port, u.dst_port)
                    });
                }
                // Neighbour discovery and MLD keep an IPv6 link working (the
                // target resolving our address to answer us): not unsolicited.
                Reply::Other { .. } if harbormaster_wire::is_link_housekeeping(packet) => {}
                Reply::Other { dst, .. } if is_group(dst) => {}
                Reply::Other { src, protocol, .. } => {
                    self.unsolicited(src, None, || format!("ip protocol {protocol}"));
                }
            }
        }
    }

    /// Counts a packet from `src` against every scan watching `src`, unless it
    /// belongs to a TCP connection the scan expects (`ports` = source, destination).
    fn unsolicited(&mut self, src: IpAddr, ports: Option<(u16, u16)>, what: impl Fn() -> String) {
        for scan in self.scans.iter_mut().flatten() {
            let Some(w) = &scan.watch else { continue };
            if scan.target != src {
                continue;
            }
            if let Some((sport, dport)) = ports
                && (w.expected_tcp_ports.contains(&sport) || w.expected_tcp_ports.contains(&dport))
            {
                continue;
            }
            scan.unsolicited(&what);
        }
    }

    /// Tells the transport which addresses to pass through its filter.
    fn update_watch(&mut self) -> std::io::Result<()> {
        let mut addrs: Vec<IpAddr> = self
            .scans
            .iter()
            .flatten()
            .filter(|s| s.watch.is_some())
            .map(|s| s.target)
            .collect();
        addrs.sort();
        addrs.dedup();
        if addrs != self.watched {
            self.transport.watch(&addrs)?;
            self.watched = addrs;
        }
        Ok(())
    }

    fn scan_for(&mut self, our_port: u16) -> Option<&mut Scan> {
        let offset = our_port.checked_sub(SOURCE_PORT_BASE)?;
        let block = usize::from(offset / TRIES_PER_BLOCK);
        self.scans.get_mut(block)?.as_deref_mut()
    }

    fn fill(&mut self, now: Instant, tx: &mut SendBatch) {
        for scan in self.scans.iter_mut().flatten() {
            scan.fill_ping(now, tx);
        }
        let busy: Vec<usize> = (0..MAX_SCANS)
            .filter(|&b| self.scans[b].as_ref().is_some_and(|s| s.has_work()))
            .collect();
        if busy.is_empty() {
            return;
        }
        let mut budget = tx.room();
        if let Some(rate) = &mut self.rate {
            budget = rate.take(now, budget);
        }
        if let Some(shared) = &self.shared {
            budget = shared.try_take(now, budget);
        }
        // Round-robin from a rotating start so no scan is always first.
        let share = budget.div_ceil(busy.len()).max(1);
        let start = self.next_turn % busy.len();
        self.next_turn = self.next_turn.wrapping_add(1);
        for k in 0..busy.len() {
            if budget == 0 {
                break;
            }
            let b = busy[(start + k) % busy.len()];
            if let Some(scan) = self.scans[b].as_mut() {
                budget -= scan.fill(now, share.min(budget), tx);
            }
        }
    }

    fn end(
        &mut self,
        block: usize,
        scan: Option<Box<Scan>>,
        cancelled: bool,
        error: Option<String>,
    ) {
        if let Some(mut scan) = scan {
            let summary = scan.summary(cancelled, error);
            (scan.sink)(ScanEvent::Done(summary));
        }
        let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        blocks[block] = false;
    }

    fn fail(mut self, e: std::io::Error) {
        let msg = format!("packet I/O failed: {e}");
        for b in 0..MAX_SCANS {
            if let Some(scan) = self.scans[b].take() {
                self.end(b, Some(scan), true, Some(msg.clone()));
            }
        }
    }
}

/// Send errors that concern one destination, not the engine.
fn is_target_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ENETUNREACH
                | libc::EHOSTUNREACH
                | libc::EACCES
                | libc::EPERM
                | libc::EADDRNOTAVAIL
        )
    )
}

/// Multicast and broadcast destinations: packets to them are addressed to a
/// group, not to the scanner, and never count as unsolicited.
fn is_group(dst: IpAddr) -> bool {
    match dst {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_multicast(),
    }
}

#[cfg(test)]
mod tests {
    use super::is_group;

    #[test]
    fn groups_are_multicast_and_broadcast_only() {
        for a in [
            "239.255.255.250",
            "224.0.0.251",
            "255.255.255.255",
            "ff02::c",
            "ff02::fb",
        ] {
            assert!(is_group(a.parse().unwrap()), "{a}");
        }
        for a in ["198.18.0.1", "fd00:198:18::1", "192.0.2.255"] {
            assert!(!is_group(a.parse().unwrap()), "{a}");
        }
    }
}
