//! The UDP tests: UPnP exposure (SSDP discovery on UDP 1900, asked as
//! ShieldsUP! does, up to ten times half a second apart) and UDP exposure
//! (the reflector list). The scan says which ports answered; each answering
//! port is then asked again through a connected socket ([`Exposure`]) to
//! record what it says and how much it sends back.

use std::net::IpAddr;
use std::time::Duration;

use harbormaster_probe::exposure::{self, ExposureConfig, Reflection};
use harbormaster_wire::payload::Evidence;

use crate::db::{MAX_FINDINGS_PER_PORT, MAX_REFLECTIONS, StoredReflection};

/// The UPnP test's port.
pub const SSDP_PORT: u16 = 1900;
/// M-SEARCH datagrams sent before "no reply".
pub const UPNP_TRIES: u8 = 10;
/// Datagrams per second, so they go half a second apart.
pub const UPNP_RATE: u32 = 2;

/// How a connect-mode server (no raw sockets) runs the UPnP test: the
/// exposure step alone, ten requests, listening half a second after each.
pub fn upnp_alone() -> ExposureConfig {
    ExposureConfig {
        tries: UPNP_TRIES,
        listen: Duration::from_millis(500),
    }
}

/// Asks answering UDP ports again. The service uses [`Measured`]; tests
/// script it, so nothing is sent to their documentation addresses.
pub trait Exposure: Send + Sync + 'static {
    /// What each request to `ports` on `target` got back (see
    /// [`exposure::measure`]); blocking.
    fn measure(&self, target: IpAddr, ports: &[u16], config: &ExposureConfig) -> Vec<Reflection>;
}

/// The real exposure step: [`exposure::measure`].
#[derive(Debug, Default)]
pub struct Measured;

impl Exposure for Measured {
    fn measure(&self, target: IpAddr, ports: &[u16], config: &ExposureConfig) -> Vec<Reflection> {
        exposure::measure(target, ports, config)
    }
}

/// The answered requests, as stored: bounded to [`MAX_REFLECTIONS`] rows
/// and [`MAX_FINDINGS_PER_PORT`] findings per port.
pub fn stored(reflections: &[Reflection]) -> Vec<StoredReflection> {
    let mut per_port: std::collections::HashMap<u16, usize> = std::collections::HashMap::new();
    reflections
        .iter()
        .filter(|r| r.answered())
        .take(MAX_REFLECTIONS)
        .map(|r| {
            let used = per_port.entry(r.port).or_default();
            let room = MAX_FINDINGS_PER_PORT.saturating_sub(*used);
            let findings: Vec<String> = r
                .evidence
                .iter()
                .take(room)
                .map(exposure::describe)
                .collect();
            *used += findings.len();
            let ssdp = r.evidence.iter().find_map(|e| match e {
                Evidence::Ssdp(s) => Some(s),
                _ => None,
            });
            let a = &r.amplification;
            StoredReflection {
                port: r.port,
                protocol: r.protocol,
                findings,
                server: ssdp.and_then(|s| s.server.clone()),
                location: ssdp.and_then(|s| s.location.clone()),
                usn: ssdp.and_then(|s| s.usn.clone()),
                request_packets: a.request_packets,
                request_bytes: a.request_bytes,
                reply_packets: a.reply_packets,
                reply_bytes: a.reply_bytes,
            }
        })
        .collect()
}

/// "1 request of 48 bytes → 1 reply of 468 bytes (9.8×)".
pub fn amplification_line(x: &StoredReflection) -> String {
    let n = |count: u32, one: &str, many: &str| {
        format!("{count} {}", if count == 1 { one } else { many })
    };
    format!(
        "{} of {} bytes → {} of {} bytes ({:.1}×)",
        n(x.request_packets, "request", "requests"),
        x.request_bytes,
        n(x.reply_packets, "reply", "replies"),
        x.reply_bytes,
        x.factor()
    )
}

/// What the SERVER header gives away.
pub const SERVER_MEANS: &str = "The operating system, UPnP version and often the make, model and firmware of the device that answered. Anyone can look that version up in lists of known flaws.";
/// What the LOCATION header gives away.
pub const LOCATION_MEANS: &str = "The web address of the device's UPnP description, and from it the control addresses through which programs open ports in your router. It often names an address and port inside your network.";
/// What the USN header gives away.
pub const USN_MEANS: &str = "A name unique to this one device, which stays the same when your public address changes, so the device can be recognised again.";
/// Why answering SSDP from the internet is a risk.
pub const UPNP_RISK: &str = "UPnP discovery is meant for the devices in your home. A device that answers it from the internet can be used to flood others: an attacker sends small requests with a forged sender address, and your device sends much larger replies to the victim. The reply also points strangers at the UPnP control service, which on some routers lets anyone open ports or change settings without a password.";
/// How to close it.
pub const UPNP_CLOSE: &str = "Open your router's settings and turn UPnP off, or at least make sure it only listens on the home (LAN) side, never on the internet (WAN) side; update the router's firmware, since answering on the WAN side is a known flaw of some models. If the answer comes from a device behind the router, remove the port-forward or DMZ setting that sends UDP 1900 to it. Then run this test again.";

#[cfg(test)]
mod tests {
    use harbormaster_wire::payload::{Amplification, Protocol, ssdp::SsdpEvidence};

    use super::*;

    fn ssdp(port: u16, evidence: usize) -> Reflection {
        Reflection {
            port,
            protocol: Protocol::Ssdp,
            evidence: (0..evidence)
                .map(|i| {
                    Evidence::Ssdp(SsdpEvidence {
                        status: 200,
                        server: Some(format!("Linux UPnP/1.1 test/{i}")),
                        location: Some("http://198.18.0.2:5000/rootDesc.xml".into()),
                        usn: Some("uuid:x".into()),
                        st: None,
                    })
                })
                .collect(),
            amplification: Amplification {
                request_packets: 1,
                request_bytes: 48,
                reply_packets: 1,
                reply_bytes: 468,
            },
        }
    }

    #[test]
    fn stored_findings_are_bounded_and_silent_requests_dropped() {
        let mut silent = ssdp(1900, 0);
        silent.amplification.reply_packets = 0;
        let many: Vec<Reflection> = std::iter::once(silent)
            .chain((0..100).map(|_| ssdp(1900, 4)))
            .collect();
        let s = stored(&many);
        assert_eq!(s.len(), MAX_REFLECTIONS);
        let findings: usize = s.iter().map(|x| x.findings.len()).sum();
        assert_eq!(findings, MAX_FINDINGS_PER_PORT);
        assert_eq!(
            s[0].location.as_deref(),
            Some("http://198.18.0.2:5000/rootDesc.xml")
        );
        assert_eq!(s[0].server.as_deref(), Some("Linux UPnP/1.1 test/0"));
    }

    #[test]
    fn amplification_reads_as_in_the_issue() {
        let s = stored(&[ssdp(1900, 1)]);
        assert_eq!(
            amplification_line(&s[0]),
            "1 request of 48 bytes → 1 reply of 468 bytes (9.8×)"
        );
    }
}
