//! The start page: who would be probed, what the test does, and the consent form.

use harbormaster_probe::{COMMON_PORTS, compress_ranges};
use maud::{Markup, html};

use crate::prober::ProbeMode;

/// What the landing page knows about the visitor.
pub struct Visitor<'a> {
    /// The address that would be probed.
    pub ip: String,
    /// Its reverse-DNS name, when found.
    pub rdns: Option<String>,
    /// A CSRF token for the consent form.
    pub token: &'a str,
    /// Why this address cannot be probed, if so.
    pub refusal: Option<String>,
}

/// Limits shown on the landing page.
pub struct Offer {
    /// Probing mode.
    pub mode: ProbeMode,
    /// Most ports in a custom test.
    pub custom_cap: usize,
    /// Whether the full sweep is offered.
    pub allow_full: bool,
}

fn mode_note(mode: ProbeMode) -> Markup {
    html! {
        p.mode {
            @match mode {
                ProbeMode::Syn => { "This server probes with raw SYN packets, also pings your address and watches for packets your side sends on its own." }
                ProbeMode::Connect => { "Your test runs in connect mode (this server has no raw-socket probing for your address): it tells open, closed, filtered and stealth ports apart, but cannot ping you or watch for unsolicited packets." }
                ProbeMode::Scripted => { "This server runs with a scripted prober (test mode)." }
            }
        }
    }
}

/// The landing page.
pub fn home(v: &Visitor<'_>, offer: &Offer) -> Markup {
    let common = compress_ranges(&COMMON_PORTS);
    html! {
        section.you {
            h1 { "Your connection, seen from outside" }
            p.ip { "Your address: " strong #visitor-ip { (v.ip) } }
            @match &v.rdns {
                Some(name) => p { "Its reverse-DNS name: " code { (name) } ". Names like this often reveal your provider, your town or the kind of line you have; every server you visit can see it." },
                None => p { "No reverse-DNS name was found for it (or the lookup is turned off on this server)." },
            }
        }
        section {
            h2 { "What the test does" }
            p { "Harbormaster sends connection attempts (TCP SYN packets) from this server to the ports you choose on your own address — never to any other — and reports what came back for each: " strong { "open" } " (something accepted), " strong { "closed" } " (a refusal came back), " strong { "filtered" } " (a router or firewall answered that it blocks the port) or " strong { "stealth" } " (nothing came back at all, even after retries)." }
            p { "A closed port is not a vulnerability: it only shows that a device answers. Stealth ports give an attacker nothing to work with; open ports are worth understanding, and each result links to what runs there and how to close it." }
            (mode_note(offer.mode))
        }
        @if let Some(why) = &v.refusal {
            section.error { h2 { "This address cannot be tested" } p { (why) } }
        } @else {
            section.consent {
                h2 { "Choose a test" }
                form method="post" action="/scan" {
                    input type="hidden" name="token" value=(v.token);
                    fieldset {
                        legend { "Test" }
                        label { input type="radio" name="kind" value="common" checked; " Common Ports — " (COMMON_PORTS.len()) " ports most often attacked (" (common) ")" }
                        label { input type="radio" name="kind" value="service"; " Service Ports — 0 to 1055, shown as a 32 × 33 grid" }
                        label { input type="radio" name="kind" value="custom"; " Custom — up to " (offer.custom_cap) " ports: " input name="ports" placeholder="e.g. 22,80,443,8000-8100" aria-label="Custom ports and ranges"; }
                        @if offer.allow_full {
                            label { input type="radio" name="kind" value="full"; " All ports — 0 to 65535" }
                        }
                    }
                    p.consent-text { "By pressing the button you ask this server to probe " strong { (v.ip) } " now." }
                    button.go type="submit" { "Probe my connection" }
                }
            }
        }
    }
}
