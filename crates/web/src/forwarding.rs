//! Reading the client's address from the one forwarding header a trusted
//! reverse proxy writes.
//!
//! Pure parsing over bytes, with no dependency beyond `std`, so the fuzz target
//! (`fuzz/fuzz_targets/forwarding.rs`) includes this file as it is instead of
//! building the whole web crate. [`crate::policy::target`] decides *whether* a
//! header is read (only when the peer is a trusted proxy); this module decides
//! *what* it says.
//!
//! The rules, for a chain `a, b, c` (left = furthest from us):
//! - Only the operator's chosen header is read; every other one is ignored, so
//!   a client cannot add a header the proxy passes through untouched.
//! - Lines of that header are one list, in order (`a` then `b, c` = `a, b, c`).
//! - The chain is read from the right. Entries inside the trusted networks are
//!   our own proxies and are skipped; the first entry that is not is the client.
//! - Everything left of that entry was written by the client (or by proxies we
//!   do not know) and is never looked at, so garbage there does not matter.
//! - At or right of that point every entry must be a valid address: an
//!   unparseable entry, `unknown`, an obfuscated name (`_hidden`), a chain of
//!   nothing but trusted addresses, or a missing header is an error, never a
//!   fall-back to the proxy's own address.
//! - Any byte outside printable ASCII anywhere in the header is an error: we
//!   cannot know how the proxy split such a value, so we do not guess.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The forwarding header the operator's reverse proxy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1` (nginx `$proxy_add_x_forwarded_for`,
    /// Caddy's default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
    /// `X-Real-IP: client`: one address, set (not appended) by the proxy.
    XRealIp,
}

impl ProxyHeader {
    /// The header's name in lower case, as `HeaderMap` looks it up.
    pub fn name(self) -> &'static str {
        match self {
            ProxyHeader::XForwardedFor => "x-forwarded-for",
            ProxyHeader::Forwarded => "forwarded",
            ProxyHeader::XRealIp => "x-real-ip",
        }
    }
}

impl fmt::Display for ProxyHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyHeader::XForwardedFor => "X-Forwarded-For",
            ProxyHeader::Forwarded => "Forwarded",
            ProxyHeader::XRealIp => "X-Real-IP",
        })
    }
}

/// Why a trusted proxy's header names no client that can be probed.
///
/// (A hand-written `Display` rather than `thiserror`, to keep this file free
/// of dependencies for the fuzz target.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainError {
    /// The header is not there at all.
    Missing,
    /// A byte outside printable ASCII.
    NotAscii,
    /// An entry at or right of the client's position is not an address.
    Unparseable,
    /// The client's entry is `unknown` or an obfuscated identifier.
    Unidentified,
    /// Every entry is one of our trusted proxies.
    AllTrusted,
    /// `X-Real-IP` holds more than one value.
    Several,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChainError::Missing => "the header is missing",
            ChainError::NotAscii => "it holds bytes that are not printable ASCII",
            ChainError::Unparseable => "an entry the proxy vouches for is not an IP address",
            ChainError::Unidentified => "the client is given as unknown or as an obfuscated name",
            ChainError::AllTrusted => "every address in it is one of the server's trusted proxies",
            ChainError::Several => "it holds more than one address",
        })
    }
}

/// What one chain entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// An address (IPv4-mapped IPv6 already unwrapped).
    Ip(IpAddr),
    /// `unknown` or an obfuscated identifier (`_abc`).
    Unidentified,
}

/// Unwraps IPv4-mapped IPv6 (`::ffff:a.b.c.d`) so policy sees the real family.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The client named by `lines` (every line of `header`, in arrival order),
/// given which addresses are our own trusted proxies.
pub fn client(
    header: ProxyHeader,
    lines: &[&[u8]],
    is_trusted: impl Fn(IpAddr) -> bool,
) -> Result<IpAddr, ChainError> {
    if lines.is_empty() {
        return Err(ChainError::Missing);
    }
    let mut texts = Vec::with_capacity(lines.len());
    for line in lines {
        // HTTP allows tab and obs-text (0x80-0xff) in values; we allow tab only.
        if !line
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return Err(ChainError::NotAscii);
        }
        // Checked just above: every byte is ASCII.
        texts.push(std::str::from_utf8(line).map_err(|_| ChainError::NotAscii)?);
    }
    // Right to left over the concatenated list; empty list items carry nothing.
    let entries = texts
        .iter()
        .rev()
        .flat_map(|t| t.rsplit(','))
        .map(|e| e.trim_matches([' ', '\t']))
        .filter(|e| !e.is_empty());
    if header == ProxyHeader::XRealIp {
        let mut entries = entries;
        let only = entries.next().ok_or(ChainError::Missing)?;
        if entries.next().is_some() {
            return Err(ChainError::Several);
        }
        return match parse_plain(only).ok_or(ChainError::Unparseable)? {
            Node::Unidentified => Err(ChainError::Unidentified),
            Node::Ip(ip) if is_trusted(ip) => Err(ChainError::AllTrusted),
            Node::Ip(ip) => Ok(ip),
        };
    }
    let mut seen = false;
    for entry in entries {
        seen = true;
        let node = match header {
            ProxyHeader::Forwarded => parse_forwarded_element(entry),
            _ => parse_plain(entry),
        };
        match node.ok_or(ChainError::Unparseable)? {
            Node::Unidentified => return Err(ChainError::Unidentified),
            Node::Ip(ip) if is_trusted(ip) => continue,
            Node::Ip(ip) => return Ok(ip),
        }
    }
    Err(if seen {
        ChainError::AllTrusted
    } else {
        ChainError::Missing
    })
}

/// An X-Forwarded-For or X-Real-IP entry: `192.0.2.1`, `2001:db8::1`,
/// `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`, or `unknown`.
pub fn parse_plain(s: &str) -> Option<Node> {
    if s.eq_ignore_ascii_case("unknown") {
        return Some(Node::Unidentified);
    }
    parse_address(s).map(|ip| Node::Ip(canonical(ip)))
}

/// One `Forwarded` element (`for=…;proto=…;by=…`): the node of its single `for`
/// parameter. `None` when the element is malformed, has no `for`, or has two.
pub fn parse_forwarded_element(element: &str) -> Option<Node> {
    let mut node = None;
    for pair in element.split(';') {
        let pair = pair.trim_matches([' ', '\t']);
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return None;
        }
        let is_for = name.eq_ignore_ascii_case("for");
        // A bare IPv6 address is not a token (`:`), but is unambiguous. The
        // other parameters (`by`, `host`, `proto`) are never used, so their
        // values need only be free of stray quotes.
        let value = unquote(value).or_else(|| {
            let bare = if is_for {
                value.parse::<Ipv6Addr>().is_ok()
            } else {
                !value.is_empty() && !value.contains('"')
            };
            bare.then_some(value)
        })?;
        if is_for {
            if node.is_some() {
                return None;
            }
            node = Some(parse_forwarded_node(value)?);
        }
    }
    node
}

/// A `Forwarded` node (RFC 7239 §6): `unknown`, `_obfuscated`, an IPv4
/// address, a bracketed IPv6 address, each optionally with `:port`.
/// Bare IPv6 without brackets is accepted too (what `for=$remote_addr` in an
/// nginx config produces), since it cannot be mistaken for anything else.
fn parse_forwarded_node(v: &str) -> Option<Node> {
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        let ip: Ipv6Addr = h.parse().ok()?;
        if let Some(p) = port {
            valid_port(p)?;
        }
        return Some(Node::Ip(canonical(IpAddr::V6(ip))));
    } else if let Ok(ip) = v.parse::<Ipv6Addr>() {
        return Some(Node::Ip(canonical(IpAddr::V6(ip))));
    } else {
        match v.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (v, None),
        }
    };
    if let Some(p) = port {
        valid_port(p)?;
    }
    if host.eq_ignore_ascii_case("unknown") {
        return Some(Node::Unidentified);
    }
    if let Some(rest) = host.strip_prefix('_') {
        return obfuscated(rest).then_some(Node::Unidentified);
    }
    host.parse::<Ipv4Addr>()
        .ok()
        .map(|ip| Node::Ip(IpAddr::V4(ip)))
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`.
fn parse_address(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        if !after.is_empty() {
            valid_port(after.strip_prefix(':')?)?;
        }
        return h.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (h, p) = s.split_once(':')?;
    valid_port(p)?;
    h.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port (1–5 digits, at most 65535) or an obfuscated port (`_abc`).
fn valid_port(p: &str) -> Option<()> {
    if let Some(rest) = p.strip_prefix('_') {
        return obfuscated(rest).then_some(());
    }
    (!p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
        .then(|| p.parse::<u16>().ok())
        .flatten()
        .map(|_| ())
}

/// The rest of an obfuscated identifier after `_`: ALPHA / DIGIT / "." / "_" / "-".
fn obfuscated(rest: &str) -> bool {
    !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A token or a quoted-string (RFC 9110 §5.6), without the quotes. Quoted
/// pairs (`\x`) are not expected in addresses and make the value invalid.
fn unquote(v: &str) -> Option<&str> {
    if let Some(inner) = v.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        return (!inner.contains(['"', '\\'])).then_some(inner);
    }
    (!v.is_empty() && v.bytes().all(is_tchar)).then_some(v)
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Trusted: 10.0.0.0/8 and fd00::/16 (our proxies).
    fn trusted(a: IpAddr) -> bool {
        match a {
            IpAddr::V4(v4) => v4.octets()[0] == 10,
            IpAddr::V6(v6) => v6.segments()[0] == 0xfd00,
        }
    }

    fn xff(lines: &[&str]) -> Result<IpAddr, ChainError> {
        let l: Vec<&[u8]> = lines.iter().map(|s| s.as_bytes()).collect();
        client(ProxyHeader::XForwardedFor, &l, trusted)
    }

    fn fwd(lines: &[&str]) -> Result<IpAddr, ChainError> {
        let l: Vec<&[u8]> = lines.iter().map(|s| s.as_bytes()).collect();
        client(ProxyHeader::Forwarded, &l, trusted)
    }

    fn real(lines: &[&str]) -> Result<IpAddr, ChainError> {
        let l: Vec<&[u8]> = lines.iter().map(|s| s.as_bytes()).collect();
        client(ProxyHeader::XRealIp, &l, trusted)
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        assert_eq!(xff(&["198.51.100.7"]), Ok(ip("198.51.100.7")));
        assert_eq!(
            xff(&["6.6.6.6, 198.51.100.7, 10.0.0.9"]),
            Ok(ip("198.51.100.7"))
        );
        assert_eq!(xff(&["2001:db8::7,fd00::1"]), Ok(ip("2001:db8::7")));
        assert_eq!(xff(&["[2001:db8::7]:443"]), Ok(ip("2001:db8::7")));
        assert_eq!(xff(&["198.51.100.7:4711"]), Ok(ip("198.51.100.7")));
        assert_eq!(xff(&["::ffff:198.51.100.7"]), Ok(ip("198.51.100.7")));
        // A trusted proxy given as IPv4-mapped IPv6 is still trusted.
        assert_eq!(
            xff(&["198.51.100.7, ::ffff:10.1.1.1"]),
            Ok(ip("198.51.100.7"))
        );
    }

    #[test]
    fn several_lines_are_one_list_in_order() {
        assert_eq!(
            xff(&["6.6.6.6", "198.51.100.7, 10.0.0.9", "10.0.0.8"]),
            Ok(ip("198.51.100.7"))
        );
        assert_eq!(
            fwd(&["for=6.6.6.6", "for=198.51.100.7"]),
            Ok(ip("198.51.100.7"))
        );
    }

    #[test]
    fn garbage_left_of_the_client_is_the_clients_own_business() {
        assert_eq!(
            xff(&["garbage, unknown, _x, 1.2.3.4.5, 198.51.100.7"]),
            Ok(ip("198.51.100.7"))
        );
        assert_eq!(
            fwd(&["for=\"[oops, by=x;for=1;for=2, for=198.51.100.7"]),
            Ok(ip("198.51.100.7"))
        );
    }

    #[test]
    fn garbage_at_or_right_of_the_client_is_refused() {
        assert_eq!(xff(&["garbage"]), Err(ChainError::Unparseable));
        assert_eq!(
            xff(&["198.51.100.7, nonsense"]),
            Err(ChainError::Unparseable)
        );
        assert_eq!(
            xff(&["198.51.100.7, bogus, 10.0.0.1"]),
            Err(ChainError::Unparseable)
        );
        assert_eq!(xff(&["198.51.100.7:99999"]), Err(ChainError::Unparseable));
        assert_eq!(xff(&["198.51.100.7:"]), Err(ChainError::Unparseable));
        assert_eq!(xff(&["[2001:db8::1"]), Err(ChainError::Unparseable));
        assert_eq!(xff(&["[2001:db8::1]x"]), Err(ChainError::Unparseable));
        assert_eq!(xff(&["fe80::1%eth0"]), Err(ChainError::Unparseable));
        assert_eq!(xff(&["010.0.0.1"]), Err(ChainError::Unparseable));
        assert_eq!(xff(&["\"198.51.100.7\""]), Err(ChainError::Unparseable));
    }

    #[test]
    fn unknown_and_obfuscated_clients_are_refused() {
        assert_eq!(xff(&["unknown"]), Err(ChainError::Unidentified));
        assert_eq!(
            xff(&["198.51.100.7, UNKNOWN"]),
            Err(ChainError::Unidentified)
        );
        assert_eq!(fwd(&["for=unknown"]), Err(ChainError::Unidentified));
        assert_eq!(fwd(&["for=_hidden"]), Err(ChainError::Unidentified));
        assert_eq!(
            fwd(&["for=\"_hidden:_port\""]),
            Err(ChainError::Unidentified)
        );
        assert_eq!(
            fwd(&["for=198.51.100.7, for=unknown;proto=http"]),
            Err(ChainError::Unidentified)
        );
    }

    #[test]
    fn a_chain_of_only_proxies_is_refused_never_the_proxy() {
        assert_eq!(xff(&["10.0.0.1"]), Err(ChainError::AllTrusted));
        assert_eq!(xff(&["10.0.0.1, 10.2.2.2"]), Err(ChainError::AllTrusted));
        assert_eq!(fwd(&["for=10.0.0.1"]), Err(ChainError::AllTrusted));
        assert_eq!(real(&["10.0.0.1"]), Err(ChainError::AllTrusted));
        assert_eq!(xff(&["fd00::1"]), Err(ChainError::AllTrusted));
    }

    #[test]
    fn missing_or_empty_headers_are_refused() {
        assert_eq!(xff(&[]), Err(ChainError::Missing));
        assert_eq!(xff(&[""]), Err(ChainError::Missing));
        assert_eq!(xff(&[" , ,"]), Err(ChainError::Missing));
        assert_eq!(real(&[]), Err(ChainError::Missing));
        assert_eq!(fwd(&[""]), Err(ChainError::Missing));
    }

    #[test]
    fn non_ascii_anywhere_is_refused() {
        let l: [&[u8]; 1] = [b"198.51.100.\xc3\xa9, 198.51.100.7"];
        assert_eq!(
            client(ProxyHeader::XForwardedFor, &l, trusted),
            Err(ChainError::NotAscii)
        );
        let l: [&[u8]; 2] = [b"\xff", b"198.51.100.7"];
        assert_eq!(
            client(ProxyHeader::XForwardedFor, &l, trusted),
            Err(ChainError::NotAscii)
        );
        let l: [&[u8]; 1] = [b"198.51.100.7\x7f"];
        assert_eq!(
            client(ProxyHeader::Forwarded, &l, trusted),
            Err(ChainError::NotAscii)
        );
        // Tab is allowed whitespace.
        assert_eq!(xff(&["\t198.51.100.7\t"]), Ok(ip("198.51.100.7")));
    }

    #[test]
    fn forwarded_syntax() {
        assert_eq!(
            fwd(&["for=\"[2001:db8::7]:4711\";proto=https"]),
            Ok(ip("2001:db8::7"))
        );
        assert_eq!(fwd(&["For=198.51.100.7"]), Ok(ip("198.51.100.7")));
        assert_eq!(
            fwd(&["proto=http;by=10.0.0.1;for=\"198.51.100.7:80\""]),
            Ok(ip("198.51.100.7"))
        );
        // A port makes the value a quoted-string (RFC 7239 §6).
        assert_eq!(fwd(&["for=198.51.100.7:80"]), Err(ChainError::Unparseable));
        assert_eq!(fwd(&["for=\"198.51.100.7\""]), Ok(ip("198.51.100.7")));
        assert_eq!(fwd(&["for=2001:db8::7"]), Ok(ip("2001:db8::7")));
        // What `by=$server_addr;host=$http_host` gives in an nginx config.
        assert_eq!(
            fwd(&["for=198.51.100.7;by=2001:db8::1;host=example.org:8443"]),
            Ok(ip("198.51.100.7"))
        );
        assert_eq!(
            fwd(&["for=198.51.100.7;by=\"x"]),
            Err(ChainError::Unparseable)
        );
        assert_eq!(fwd(&["for=198.51.100.7;by="]), Err(ChainError::Unparseable));
        // No `for`, two `for`s, broken quoting, bad names: not an element we can use.
        assert_eq!(fwd(&["proto=https"]), Err(ChainError::Unparseable));
        assert_eq!(
            fwd(&["for=198.51.100.7;for=198.51.100.8"]),
            Err(ChainError::Unparseable)
        );
        assert_eq!(fwd(&["for=\"198.51.100.7"]), Err(ChainError::Unparseable));
        assert_eq!(fwd(&["for=198.51.100.7\""]), Err(ChainError::Unparseable));
        assert_eq!(fwd(&["f o r=198.51.100.7"]), Err(ChainError::Unparseable));
        assert_eq!(fwd(&["for"]), Err(ChainError::Unparseable));
        assert_eq!(fwd(&["for="]), Err(ChainError::Unparseable));
        assert_eq!(fwd(&["198.51.100.7"]), Err(ChainError::Unparseable));
        assert_eq!(fwd(&["for=[2001:db8::7]"]), Err(ChainError::Unparseable));
        assert_eq!(
            fwd(&["for=\"[2001:db8::7]:\""]),
            Err(ChainError::Unparseable)
        );
        assert_eq!(fwd(&["for=\"a\\\"b\""]), Err(ChainError::Unparseable));
    }

    #[test]
    fn x_real_ip_is_exactly_one_address() {
        assert_eq!(real(&["198.51.100.7"]), Ok(ip("198.51.100.7")));
        assert_eq!(real(&[" 2001:db8::7 "]), Ok(ip("2001:db8::7")));
        assert_eq!(
            real(&["198.51.100.8, 198.51.100.7"]),
            Err(ChainError::Several)
        );
        assert_eq!(
            real(&["198.51.100.8", "198.51.100.7"]),
            Err(ChainError::Several)
        );
        assert_eq!(real(&["nope"]), Err(ChainError::Unparseable));
        assert_eq!(real(&["unknown"]), Err(ChainError::Unidentified));
    }

    #[test]
    fn truncated_inputs_never_yield_an_address_they_do_not_contain() {
        let full = "for=\"[2001:db8::7]:4711\";proto=https";
        for n in 0..full.len() {
            let cut = &full[..n];
            if let Ok(a) = fwd(&[cut]) {
                // Only a prefix that still spells the whole address may parse.
                assert!(cut.contains("2001:db8::7"), "{cut:?} gave {a}");
            }
        }
        let full = "203.0.113.77, 10.0.0.1";
        for n in 0..full.len() {
            let cut = &full[..n];
            if let Ok(a) = xff(&[cut]) {
                assert!(!trusted(a), "{cut:?} gave the proxy {a}");
            }
        }
    }
}
