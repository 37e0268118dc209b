//! CSRF and consent tokens: a timestamp, a random nonce (so two forms are two
//! tokens) and a keyed MAC of (address, timestamp, nonce).
//! A token is valid for one visitor address for [`TOKEN_LIFETIME`] and starts at
//! most one test: its MAC is remembered until it expires ([`MAX_REMEMBERED`]
//! at most). A form from another site cannot carry one because it cannot
//! compute the MAC; [`check_origin`] refuses cross-site posts outright when the
//! browser says where they come from.

use std::collections::{HashSet, VecDeque};
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use siphasher::sip128::{Hasher128, SipHasher24};

/// How long a consent form stays usable.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// Length of a token: 16 hex digits of time, 16 of nonce, 32 of MAC.
pub const TOKEN_LEN: usize = 64;

/// Used tokens remembered at most; past that the oldest is forgotten (it can
/// only ever start a test of the address it was issued to, which the per-address
/// limits still bound).
pub const MAX_REMEMBERED: usize = 65_536;

/// Why a consent token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token in the form.
    #[error(
        "The form's security token is missing. Reload the start page and press the button again."
    )]
    Missing,
    /// Not a token of this server for this address.
    #[error(
        "The form's security token is not valid for your address (it may be from before a server restart, or your address changed). Reload the start page and press the button again."
    )]
    Invalid,
    /// Older than [`TOKEN_LIFETIME`].
    #[error(
        "The form's security token has expired: a consent form is valid for 10 minutes. Reload the start page and press the button again."
    )]
    Expired,
    /// Already started a test.
    #[error(
        "This consent form has already been used to start a test; each form starts one test. Reload the start page to start another."
    )]
    Used,
}

/// A checked token, ready to be consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    mac: u128,
    expires: u64,
}

#[derive(Debug, Default)]
struct Used {
    macs: HashSet<u128>,
    order: VecDeque<(u64, u128)>,
}

impl Used {
    fn prune(&mut self, now: u64) {
        while let Some(&(expires, mac)) = self.order.front() {
            if expires >= now && self.order.len() < MAX_REMEMBERED {
                break;
            }
            self.order.pop_front();
            self.macs.remove(&mac);
        }
    }
}

/// The server's secret for tokens (random per process) and the tokens used.
#[derive(Clone)]
pub struct CsrfKey {
    key: [u8; 16],
    used: Arc<Mutex<Used>>,
}

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    /// A fresh random key.
    pub fn random() -> CsrfKey {
        let mut k = [0u8; 16];
        getrandom::fill(&mut k).expect("operating system random source unavailable");
        CsrfKey {
            key: k,
            used: Arc::default(),
        }
    }

    fn mac(&self, ip: IpAddr, ts: u64, nonce: u64) -> u128 {
        let mut h = SipHasher24::new_with_key(&self.key);
        match ip {
            IpAddr::V4(v4) => h.write(&v4.octets()),
            IpAddr::V6(v6) => h.write(&v6.octets()),
        }
        h.write_u64(ts);
        h.write_u64(nonce);
        h.finish128().as_u128()
    }

    /// A token for `ip`, issued now.
    pub fn issue(&self, ip: IpAddr) -> String {
        self.issue_at(ip, now())
    }

    /// A token for `ip` as if issued at `ts` (seconds since the Unix epoch);
    /// tests use it to make an old token.
    pub fn issue_at(&self, ip: IpAddr, ts: u64) -> String {
        let mut n = [0u8; 8];
        getrandom::fill(&mut n).expect("operating system random source unavailable");
        let nonce = u64::from_le_bytes(n);
        format!("{ts:016x}{nonce:016x}{:032x}", self.mac(ip, ts, nonce))
    }

    /// True when `token` was issued by this server for `ip`, has not expired
    /// and has not been used.
    pub fn verify(&self, ip: IpAddr, token: &str) -> bool {
        self.check(ip, Some(token)).is_ok()
    }

    /// Checks `token` for `ip` without using it up.
    pub fn check(&self, ip: IpAddr, token: Option<&str>) -> Result<Token, TokenError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        if token.len() != TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Invalid);
        }
        let (Ok(ts), Ok(nonce), Ok(mac)) = (
            u64::from_str_radix(&token[..16], 16),
            u64::from_str_radix(&token[16..32], 16),
            u128::from_str_radix(&token[32..], 16),
        ) else {
            return Err(TokenError::Invalid);
        };
        // Constant-time enough: a u128 comparison does not leak per-byte timing.
        if mac != self.mac(ip, ts, nonce) {
            return Err(TokenError::Invalid);
        }
        let now = now();
        if ts > now + 60 {
            return Err(TokenError::Invalid);
        }
        if now.saturating_sub(ts) > TOKEN_LIFETIME.as_secs() {
            return Err(TokenError::Expired);
        }
        if self.used().macs.contains(&mac) {
            return Err(TokenError::Used);
        }
        Ok(Token {
            mac,
            expires: ts + TOKEN_LIFETIME.as_secs(),
        })
    }

    /// Marks `token` used; fails when it already was (two posts racing).
    pub fn consume(&self, token: Token) -> Result<(), TokenError> {
        let mut used = self.used();
        used.prune(now());
        if !used.macs.insert(token.mac) {
            return Err(TokenError::Used);
        }
        used.order.push_back((token.expires, token.mac));
        Ok(())
    }

    /// Makes a consumed `token` usable again (the test it was for did not start).
    pub fn release(&self, token: Token) {
        let mut used = self.used();
        if used.macs.remove(&token.mac) {
            used.order.retain(|&(_, m)| m != token.mac);
        }
    }

    fn used(&self) -> std::sync::MutexGuard<'_, Used> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A post that the browser says came from another site.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossSite {
    /// `Origin` names another site than the one the request was sent to.
    #[error(
        "This form was sent from another site ({origin}), not from this server's own pages ({host}). Harbormaster starts a test only when you press the button on its own start page."
    )]
    Origin {
        /// The `Origin` header, shortened.
        origin: String,
        /// The `Host` header, shortened.
        host: String,
    },
    /// `Sec-Fetch-Site` says cross-site or same-site.
    #[error(
        "Your browser reports that this form was sent from another site (Sec-Fetch-Site: {0}). Harbormaster starts a test only when you press the button on its own start page."
    )]
    FetchSite(String),
}

/// Refuses a state-changing request that the browser marks as cross-site.
/// `Sec-Fetch-Site`, which browsers set and pages cannot, decides when present:
/// it must be `same-origin` or `none`. Without it, `Origin`, when present, must
/// name the host the request was sent to — except `null`, which is what
/// browsers send for our own forms because every page carries
/// `Referrer-Policy: no-referrer` (Fetch: a no-referrer request serialises its
/// origin as `null`). A request with neither (old browsers, curl) passes; the
/// token, which another site cannot read, still protects every case.
pub fn check_origin(headers: &HeaderMap) -> Result<(), CrossSite> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let v = site.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if v != "same-origin" && v != "none" {
            return Err(CrossSite::FetchSite(shorten(site.as_bytes())));
        }
        return Ok(());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        if origin.as_bytes().eq_ignore_ascii_case(b"null") {
            return Ok(());
        }
        let host = headers.get(header::HOST);
        let same = match (origin.to_str(), host.map(|h| h.to_str())) {
            (Ok(o), Some(Ok(h))) => origin_matches_host(o, h),
            _ => false,
        };
        if !same {
            return Err(CrossSite::Origin {
                origin: shorten(origin.as_bytes()),
                host: host.map_or_else(|| "no Host header".into(), |h| shorten(h.as_bytes())),
            });
        }
    }
    Ok(())
}

/// Whether `origin` (`scheme://host[:port]`) is the site `host` (`host[:port]`)
/// names; a missing port is the scheme's default, and hosts compare without case.
fn origin_matches_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // "null" and anything else that is not an origin
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let (Some((oh, op)), Some((hh, hp))) = (split_authority(authority), split_authority(host))
    else {
        return false;
    };
    oh.eq_ignore_ascii_case(hh) && op.unwrap_or(default) == hp.unwrap_or(default)
}

/// `host[:port]` or `[v6]:port` into its host and port; `None` when malformed.
fn split_authority(a: &str) -> Option<(&str, Option<u16>)> {
    if a.is_empty() || a.contains(['/', '@', ' ']) {
        return None;
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, tail) = rest.split_once(']')?;
        match tail {
            "" => (h, None),
            t => (h, Some(t.strip_prefix(':')?)),
        }
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    (!host.is_empty()).then_some((host, port))
}

/// A header value fit to show on a page: printable ASCII, at most 80 characters.
fn shorten(v: &[u8]) -> String {
    let mut s: String = v
        .iter()
        .take(80)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    if v.len() > 80 {
        s.push('…');
    }
    s
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_to_address_key_and_time() {
        let k = CsrfKey::random();
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        let t = k.issue(a);
        assert!(k.verify(a, &t));
        assert!(!k.verify(b, &t));
        assert!(!CsrfKey::random().verify(a, &t));
        assert!(!k.verify(a, ""));
        assert!(!k.verify(a, &t[..63]));
        assert!(!k.verify(a, &format!("{}x", &t[..63])));
        assert_ne!(k.issue(a), k.issue(a), "two forms, two tokens");
        let old = k.issue_at(a, now() - TOKEN_LIFETIME.as_secs() - 5);
        assert_eq!(k.check(a, Some(&old)), Err(TokenError::Expired));
        assert_eq!(k.check(a, None), Err(TokenError::Missing));
        let mut flipped = t.clone().into_bytes();
        flipped[20] = if flipped[20] == b'0' { b'1' } else { b'0' };
        assert!(!k.verify(a, std::str::from_utf8(&flipped).unwrap()));
    }

    #[test]
    fn a_token_starts_one_test() {
        let k = CsrfKey::random();
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let t = k.issue(a);
        let checked = k.check(a, Some(&t)).unwrap();
        k.consume(checked).unwrap();
        assert_eq!(k.check(a, Some(&t)), Err(TokenError::Used));
        assert_eq!(k.consume(checked), Err(TokenError::Used));
        k.release(checked);
        assert!(k.verify(a, &t));
        // Clones share what was used.
        k.clone().consume(checked).unwrap();
        assert!(!k.verify(a, &t));
    }

    #[test]
    fn the_used_set_is_bounded() {
        let k = CsrfKey::random();
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let ts = now();
        for i in 0..(MAX_REMEMBERED as u64 + 10) {
            let t = k.issue_at(a, ts - (i % 500));
            let _ = k.consume(k.check(a, Some(&t)).unwrap_or(Token {
                mac: u128::from(i),
                expires: ts + 600,
            }));
        }
        let used = k.used();
        assert!(used.macs.len() <= MAX_REMEMBERED && used.order.len() == used.macs.len());
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn origins_must_be_this_site() {
        let ok = [
            vec![],
            vec![("host", "scan.example")],
            vec![("host", "scan.example"), ("origin", "https://scan.example")],
            vec![
                ("host", "scan.example:443"),
                ("origin", "https://SCAN.example"),
            ],
            vec![
                ("host", "scan.example:8080"),
                ("origin", "http://scan.example:8080"),
            ],
            vec![
                ("host", "[2001:db8::1]:8080"),
                ("origin", "http://[2001:db8::1]:8080"),
            ],
            vec![("sec-fetch-site", "same-origin")],
            vec![("sec-fetch-site", "none")],
            // Chromium's own form post under Referrer-Policy: no-referrer.
            vec![
                ("host", "scan.example"),
                ("origin", "null"),
                ("sec-fetch-site", "same-origin"),
            ],
            vec![("host", "scan.example"), ("origin", "null")],
        ];
        for h in ok {
            assert_eq!(check_origin(&headers(&h)), Ok(()), "{h:?}");
        }
        let bad = [
            vec![("host", "scan.example"), ("origin", "https://evil.example")],
            vec![
                ("host", "scan.example"),
                ("origin", "null"),
                ("sec-fetch-site", "cross-site"),
            ],
            vec![
                ("host", "scan.example:8080"),
                ("origin", "http://scan.example"),
            ],
            vec![("host", "scan.example"), ("origin", "ftp://scan.example")],
            vec![
                ("host", "scan.example"),
                ("origin", "https://scan.example:x"),
            ],
            vec![("origin", "https://scan.example")],
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
            vec![
                ("host", "scan.example"),
                ("origin", "https://scan.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        ];
        for h in bad {
            assert!(check_origin(&headers(&h)).is_err(), "{h:?}");
        }
        assert_eq!(split_authority(""), None);
        assert_eq!(split_authority("[::1"), None);
        assert_eq!(split_authority("h:99999"), None);
        assert_eq!(shorten(&[b'a'; 100]).chars().count(), 81);
    }
}
