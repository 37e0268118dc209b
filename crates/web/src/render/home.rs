//! The start page: who would be probed, the consent form first (so the button
//! is on a phone's first screen), then what exactly will happen.

use std::time::Duration;

use harbormaster_probe::COMMON_PORTS;
use maud::{Markup, html};

use crate::prober::ProbeMode;
use crate::scans::TestKind;

/// What the landing page knows about the visitor.
pub struct Visitor<'a> {
    /// The address that would be probed.
    pub ip: String,
    /// Its reverse-DNS name, when found.
    pub rdns: Option<String>,
    /// A CSRF token for the consent form.
    pub token: &'a str,
    /// Why this address cannot be probed, if so (visitor's words, no server flags).
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
    /// How long results are kept.
    pub retention: Duration,
    /// The test ticked when the page opens (`/?test=service`); `common` otherwise.
    pub selected: TestKind,
    /// Open ports get one real connection after the SYN probes.
    pub verifies: bool,
}

/// `24 hours`, `7 days`, `30 minutes`: a retention in plain words.
pub fn plain_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = if s >= 2 * 86_400 && s.is_multiple_of(86_400) {
        (s / 86_400, "day")
    } else if s >= 3600 && s.is_multiple_of(3600) {
        (s / 3600, "hour")
    } else if s >= 60 {
        (s / 60, "minute")
    } else {
        (s, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn mode_note(mode: ProbeMode, verifies: bool) -> Markup {
    html! {
        p.mode {
            @match mode {
                ProbeMode::Syn if verifies => { "For each port, this server sends the first packet of a connection and does not complete it. Each port that answers then gets one ordinary connection, closed at once without sending any data, to tell a real service from a firewall or proxy answering for it. It also pings your address once, and notes anything your side sends to it on its own while the test runs." }
                ProbeMode::Syn => { "For each port, this server sends the first packet of a connection and never completes it, so no program on your side receives any data. It also pings your address once, and notes anything your side sends to it on its own while the test runs." }
                ProbeMode::Connect => { "For each port, this server tries to open an ordinary connection and closes it at once, sending no data. It can tell open, closed, filtered and stealth ports apart, but (unlike its raw-packet mode) cannot ping you or notice what your side sends unasked." }
                ProbeMode::Scripted => { "This server runs with a scripted prober (test mode): nothing is sent to you." }
            }
        }
    }
}

/// One test choice: a radio with its own label and a hint below it.
fn choice(kind: TestKind, selected: TestKind, title: Markup, hint: Markup) -> Markup {
    let value = kind.name();
    let id = format!("kind-{value}");
    let hint_id = format!("{id}-hint");
    html! {
        div.choice {
            input type="radio" name="kind" value=(value) id=(id) checked[selected == kind] aria-describedby=(hint_id);
            label for=(id) { (title) }
            p.hint id=(hint_id) { (hint) }
        }
    }
}

/// The landing page.
pub fn home(v: &Visitor<'_>, offer: &Offer) -> Markup {
    let kept = plain_duration(offer.retention);
    html! {
        section.you {
            h1 { "Your connection, seen from outside" }
            p.ip { "Your address: " strong #visitor-ip { (v.ip) } }
        }
        @if let Some(why) = &v.refusal {
            section.error { h2 { "This address cannot be tested" } p { (why) } }
        } @else {
            section.consent #tests {
                h2 { "Choose a test" }
                form method="post" action="/scan" {
                    input type="hidden" name="token" value=(v.token);
                    fieldset {
                        legend { "Which ports to test" }
                        (choice(TestKind::Common, offer.selected,
                            html! { "Common ports " span.badge { "Recommended for a first visit" } },
                            html! { "The " (COMMON_PORTS.len()) " ports attackers try first; takes seconds and shows whether your router answers strangers." }))
                        (choice(TestKind::Service, offer.selected,
                            html! { "Service ports" },
                            html! { "Ports 0 to 1055, where most well-known services live; about a minute." }))
                        (choice(TestKind::Custom, offer.selected,
                            html! { "Custom ports" },
                            html! { "Up to " (offer.custom_cap) " ports you choose, e.g. a game or camera port." }))
                        div.custom-field {
                            label for="custom-ports" { "Ports for a custom test" }
                            input #custom-ports name="ports" type="text" inputmode="text" autocomplete="off" spellcheck="false" maxlength=(harbormaster_probe::MAX_SPEC_CHARS) placeholder="e.g. 22, 80, 443, 8000-8100" aria-describedby="custom-ports-hint";
                            p.hint #custom-ports-hint { "Numbers and ranges with commas; typing here picks Custom." }
                        }
                        @if offer.allow_full {
                            (choice(TestKind::Full, offer.selected,
                                html! { "All ports" },
                                html! { "Every port from 0 to 65535. Takes much longer." }))
                        }
                    }
                    p.consent-text { "Pressing the button asks this server to test " strong { (v.ip) } " now, and nothing else." }
                    button.go type="submit" { "Probe my connection" }
                }
            }
        }
        section.explain {
            @if v.refusal.is_some() { h2 { "What the test does elsewhere" } }
            @else { h2 { "What happens when you press the button" } }
            ul {
                li { strong { "What is sent: " } "connection attempts from this server to the ports you chose, on " strong { (v.ip) } " only — the address your visit comes from, never any other." }
                li { strong { "What you learn: " } "for each port, whether it is " strong { "open" } " (something accepted), " strong { "closed" } " (your side refused), " strong { "filtered" } " (a router or firewall said it blocks it) or " strong { "stealth" } " (no answer at all)." }
                li { strong { "What is kept: " } "the results, with your address, for " (kept) "; then they are deleted." }
                li { strong { "Who can see them: " } "anyone you give the result's link to. The link is a long random code that is not listed anywhere." }
            }
            p { "A closed port is not a vulnerability: it only shows that a device answers. Stealth ports give an attacker nothing to work with; open ports are worth understanding, and each result links to what runs there and how to close it." }
            p { "At home, this address usually belongs to your router, not to your computer: an open port then means the router forwards it (a port-forward, a UPnP mapping or a DMZ setting) or runs a service itself." }
            (mode_note(offer.mode, offer.verifies))
            @match &v.rdns {
                Some(name) => p { "Your address's reverse-DNS name: " code.name { (name) } ". Names like this often reveal your provider, your town or the kind of line you have; every server you visit can see it." },
                None => p.small { "No reverse-DNS name was found for your address (or the lookup is turned off on this server)." },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_reads_as_words() {
        assert_eq!(plain_duration(Duration::from_secs(24 * 3600)), "24 hours");
        assert_eq!(plain_duration(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(plain_duration(Duration::from_secs(3600)), "1 hour");
        assert_eq!(plain_duration(Duration::from_secs(90)), "1 minute");
        assert_eq!(plain_duration(Duration::from_secs(5)), "5 seconds");
    }
}
