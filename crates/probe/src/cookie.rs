//! Keyed probe cookies: the SYN sequence number is a SipHash of the addresses and
//! ports under a per-scan random key, so a reply is accepted only if it answers a
//! probe we really sent (a SYN-ACK or RST acknowledges cookie + 1; an ICMP error
//! quotes the cookie). Nobody without the key can forge a result, and stray
//! traffic is ignored.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

/// A per-scan secret for probe cookies.
#[derive(Clone, Copy)]
pub struct CookieKey {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    /// A key from the operating system's random source.
    pub fn random() -> CookieKey {
        let mut bytes = [0u8; 16];
        // Without a random source we would rather stop than scan with a guessable key.
        getrandom::fill(&mut bytes).expect("operating system random source unavailable");
        CookieKey::from_bytes(bytes)
    }

    /// A fixed key (tests and reproducible simulations).
    pub fn from_bytes(bytes: [u8; 16]) -> CookieKey {
        let (a, b) = bytes.split_at(8);
        CookieKey {
            k0: u64::from_le_bytes(a.try_into().unwrap_or_default()),
            k1: u64::from_le_bytes(b.try_into().unwrap_or_default()),
        }
    }

    /// The cookie for a probe from `src`:`src_port` to `dst`:`dst_port`.
    pub fn cookie(&self, src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16) -> u32 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        write_ip(&mut h, src);
        write_ip(&mut h, dst);
        h.write_u16(src_port);
        h.write_u16(dst_port);
        h.finish() as u32
    }

    /// A keyed 64-bit hash of `value` under `tweak` (used by the port permutation).
    pub fn hash(&self, tweak: u64, value: u64) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0 ^ tweak, self.k1);
        h.write_u64(value);
        h.finish()
    }
}

fn write_ip(h: &mut SipHasher13, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => h.write(&v4.octets()),
        IpAddr::V6(v6) => h.write(&v6.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_depend_on_every_input_and_the_key() {
        let k = CookieKey::from_bytes([7; 16]);
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let b: IpAddr = "198.18.0.2".parse().unwrap();
        let base = k.cookie(a, b, 61000, 80);
        assert_eq!(base, k.cookie(a, b, 61000, 80), "deterministic");
        assert_ne!(base, k.cookie(b, a, 61000, 80));
        assert_ne!(base, k.cookie(a, b, 61001, 80));
        assert_ne!(base, k.cookie(a, b, 61000, 81));
        assert_ne!(base, CookieKey::from_bytes([8; 16]).cookie(a, b, 61000, 80));
        assert_ne!(
            CookieKey::random().cookie(a, b, 1, 2),
            CookieKey::random().cookie(a, b, 1, 2)
        );
    }
}
