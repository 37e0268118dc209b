//! SSDP: an M-SEARCH for every device and service (`ssdp:all`), written
//! from the UPnP Device Architecture 1.1 (§1.3.2), and its HTTP-over-UDP
//! search responses.
//!
//! A UPnP device that answers M-SEARCH from the internet is a reflector (it
//! sends one response per device and service it has, often ten or more
//! datagrams for one request) and tells where its description document is
//! (LOCATION), often an HTTP server on the WAN side.
//!
//! SSDP has no field that echoes anything of the request, so there is no
//! cookie: a receiver matches responses on the source address and port (1900)
//! and on having sent this M-SEARCH.

use super::{Evidence, PayloadError, PayloadSpec, Protocol, put, text};

/// SSDP M-SEARCH, port 1900.
pub const SSDP: PayloadSpec = PayloadSpec {
    port: 1900,
    protocol: Protocol::Ssdp,
    cookie_bits: 0,
    multi_reply: true,
    write,
    parse,
    reference: "UPnP Device Architecture 1.1, §1.3",
    reply_from_other_port: false,
};

/// The M-SEARCH we send (94 bytes). The HOST header is the multicast group,
/// as the architecture requires of a multicast search; unicast responders
/// accept it too. MX 1 asks for a reply within a second.
pub const M_SEARCH: &[u8] = b"M-SEARCH * HTTP/1.1\r\n\
HOST: 239.255.255.250:1900\r\n\
MAN: \"ssdp:discover\"\r\n\
MX: 1\r\n\
ST: ssdp:all\r\n\
\r\n";

/// The most header lines read from one response.
const MAX_LINES: usize = 64;

/// One search response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SsdpEvidence {
    /// The status code (always 200: other statuses are rejected).
    pub status: u16,
    /// SERVER: OS, UPnP version and product.
    pub server: Option<String>,
    /// LOCATION: the URL of the device description.
    pub location: Option<String>,
    /// USN: the unique service name.
    pub usn: Option<String>,
    /// ST: the search target this response is for.
    pub st: Option<String>,
}

/// Writes [`M_SEARCH`].
pub fn write(_cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    put(buf, M_SEARCH)
}

/// Reads one search response: `HTTP/1.1 200`, header lines up to a blank
/// line, and at least one of ST and USN.
pub fn parse(reply: &[u8], _cookie: u32) -> Result<Evidence, PayloadError> {
    let end = find(reply, b"\r\n\r\n")
        .map(|i| i + 2)
        .or_else(|| find(reply, b"\n\n").map(|i| i + 1))
        .ok_or(PayloadError::Truncated {
            what: "SSDP response headers",
            need: reply.len() + 1,
            have: reply.len(),
        })?;
    let head = &reply[..end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, |&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    if !version.eq_ignore_ascii_case(b"HTTP/1.1") && !version.eq_ignore_ascii_case(b"HTTP/1.0") {
        return Err(PayloadError::Malformed(
            "SSDP reply is not an HTTP response",
        ));
    }
    let status: u16 = std::str::from_utf8(parts.next().unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(PayloadError::Malformed("SSDP status code"))?;
    if status != 200 {
        return Err(PayloadError::Malformed("SSDP status is not 200"));
    }
    let mut ev = SsdpEvidence {
        status,
        ..Default::default()
    };
    for line in lines.take(MAX_LINES) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let slot = if name.eq_ignore_ascii_case(b"SERVER") {
            &mut ev.server
        } else if name.eq_ignore_ascii_case(b"LOCATION") {
            &mut ev.location
        } else if name.eq_ignore_ascii_case(b"USN") {
            &mut ev.usn
        } else if name.eq_ignore_ascii_case(b"ST") {
            &mut ev.st
        } else {
            continue;
        };
        if slot.is_none() {
            *slot = Some(text(value));
        }
    }
    if ev.st.is_none() && ev.usn.is_none() {
        return Err(PayloadError::Malformed(
            "SSDP response has neither ST nor USN",
        ));
    }
    Ok(Evidence::Ssdp(ev))
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// miniupnpd 2.3.1's response for its root device (captured in the test
    /// namespace).
    const MINIUPNPD: &[u8] = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: upnp:rootdevice\r\nUSN: uuid:3f0e5c2a-6b1d-4c8e-9a47-0d2b7e1f5a10::upnp:rootdevice\r\nEXT:\r\nSERVER: Debian/6.1 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://198.18.0.2:5000/rootDesc.xml\r\nOPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n01-NLS: 1\r\nBOOTID.UPNP.ORG: 1\r\nCONFIGID.UPNP.ORG: 1337\r\n\r\n";

    #[test]
    fn search_response() {
        assert_eq!(SSDP.request(0).len(), 94);
        match SSDP.parse(MINIUPNPD, 0).unwrap() {
            Evidence::Ssdp(s) => {
                assert_eq!(s.status, 200);
                assert_eq!(s.st.as_deref(), Some("upnp:rootdevice"));
                assert_eq!(
                    s.location.as_deref(),
                    Some("http://198.18.0.2:5000/rootDesc.xml")
                );
                assert!(s.server.unwrap().contains("MiniUPnPd/2.3.1"));
                assert!(s.usn.unwrap().starts_with("uuid:3f0e5c2a"));
            }
            e => panic!("{e:?}"),
        }
        every_prefix_fails(&SSDP, MINIUPNPD, 0);
        mutations_never_panic(&SSDP, MINIUPNPD, 0);
    }

    #[test]
    fn not_a_search_response() {
        // Our own request, a NOTIFY, an error status, headers without ST/USN.
        assert!(SSDP.parse(M_SEARCH, 0).is_err());
        assert!(
            SSDP.parse(b"NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\n\r\n", 0)
                .is_err()
        );
        assert!(
            SSDP.parse(b"HTTP/1.1 404 Not Found\r\nST: x\r\n\r\n", 0)
                .is_err()
        );
        assert!(
            SSDP.parse(b"HTTP/1.1 200 OK\r\nSERVER: x\r\n\r\n", 0)
                .is_err()
        );
        // Bare LF line ends are accepted.
        assert!(SSDP.parse(b"HTTP/1.1 200 OK\nST: x\n\n", 0).is_ok());
    }
}
