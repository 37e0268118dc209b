//! Stateless CSRF tokens: a timestamp and a keyed MAC of (address, timestamp).
//! A token is valid for one visitor address for [`TOKEN_LIFETIME`]; a form from
//! another site cannot carry one because it cannot compute the MAC.

use std::hash::Hasher;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use siphasher::sip128::{Hasher128, SipHasher24};

/// How long a consent form stays usable.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The server's secret for tokens (random per process).
#[derive(Clone)]
pub struct CsrfKey([u8; 16]);

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
        CsrfKey(k)
    }

    fn mac(&self, ip: IpAddr, ts: u64) -> u128 {
        let mut h = SipHasher24::new_with_key(&self.0);
        match ip {
            IpAddr::V4(v4) => h.write(&v4.octets()),
            IpAddr::V6(v6) => h.write(&v6.octets()),
        }
        h.write_u64(ts);
        h.finish128().as_u128()
    }

    /// A token for `ip`, issued now.
    pub fn issue(&self, ip: IpAddr) -> String {
        self.issue_at(ip, now())
    }

    fn issue_at(&self, ip: IpAddr, ts: u64) -> String {
        format!("{ts:016x}{:032x}", self.mac(ip, ts))
    }

    /// True when `token` was issued by this server for `ip` and has not expired.
    pub fn verify(&self, ip: IpAddr, token: &str) -> bool {
        if token.len() != 48 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let (Ok(ts), Ok(mac)) = (
            u64::from_str_radix(&token[..16], 16),
            u128::from_str_radix(&token[16..], 16),
        ) else {
            return false;
        };
        let age = now().saturating_sub(ts);
        // Constant-time enough: a u128 comparison does not leak per-byte timing.
        ts <= now() + 60 && age <= TOKEN_LIFETIME.as_secs() && mac == self.mac(ip, ts)
    }
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
        assert!(!k.verify(a, &t[..47]));
        assert!(!k.verify(a, &format!("{}x", &t[..47])));
        let old = k.issue_at(a, now() - TOKEN_LIFETIME.as_secs() - 5);
        assert!(!k.verify(a, &old));
        let mut flipped = t.clone().into_bytes();
        flipped[20] = if flipped[20] == b'0' { b'1' } else { b'0' };
        assert!(!k.verify(a, std::str::from_utf8(&flipped).unwrap()));
    }
}
