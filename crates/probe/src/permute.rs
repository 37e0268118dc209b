//! A keyed pseudo-random permutation of `0..n`, so ports are probed in an order
//! that does not walk a host sequentially, without storing a shuffled list.
//!
//! A balanced Feistel network over the smallest even number of bits that covers
//! `n` is a bijection on `0..2^bits`; "cycle walking" (re-encrypting until the
//! value falls below `n`) restricts it to a bijection on `0..n`. Because
//! `2^bits < 4n`, a value needs fewer than four rounds of walking on average.

use crate::cookie::CookieKey;

const ROUNDS: u64 = 4;

/// A bijection on `0..n`.
#[derive(Debug, Clone, Copy)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    key: CookieKey,
}

impl Permutation {
    /// A permutation of `0..n` chosen by `key`.
    pub fn new(n: u64, key: CookieKey) -> Permutation {
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        Permutation {
            n,
            half_bits: bits.div_ceil(2),
            key,
        }
    }

    /// The size of the domain.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// True for the empty domain.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The `i`-th element of the permuted order (`i < n`).
    pub fn nth(&self, i: u64) -> u64 {
        debug_assert!(i < self.n);
        let mut x = i;
        loop {
            x = self.encrypt(x);
            if x < self.n {
                return x;
            }
        }
    }

    fn encrypt(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for round in 0..ROUNDS {
            let f = self.key.hash(round, right) & mask;
            (left, right) = (right, left ^ f);
        }
        (left << self.half_bits) | right
    }
}

/// The order a scan visits its ports in: a keyed permutation of the
/// well-known ports (below 1024) first, then one of the rest.
///
/// A home router answers on a handful of ports, and those are mostly
/// well-known ones (the services it runs or forwards). Finding one early
/// gives the scan its first round-trip and drop evidence early, while the
/// rate is still low; a stealth host's scan otherwise learns nothing about
/// its path for seconds (see `engine::timing_probes`).
#[derive(Debug, Clone, Copy)]
pub struct PortOrder {
    /// How many of the sorted ports are well-known: the first tier.
    first: u64,
    head: Permutation,
    tail: Permutation,
}

/// Ports below this are probed first.
const WELL_KNOWN_END: u16 = 1024;

impl PortOrder {
    /// The order for `ports`, which must be sorted ascending.
    pub fn new(ports: &[u16], key: CookieKey) -> PortOrder {
        debug_assert!(ports.windows(2).all(|w| w[0] < w[1]));
        let first = ports.partition_point(|&p| p < WELL_KNOWN_END) as u64;
        let rest = ports.len() as u64 - first;
        PortOrder {
            first,
            head: Permutation::new(first, key),
            tail: Permutation::new(rest, key),
        }
    }

    /// The index (into the sorted ports) of the `i`-th port to probe.
    pub fn nth(&self, i: u64) -> u64 {
        if i < self.first {
            self.head.nth(i)
        } else {
            self.first + self.tail.nth(i - self.first)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_order_visits_every_port_once_well_known_first() {
        let key = CookieKey::from_bytes([7; 16]);
        for ports in [
            (0..=65535u16).collect::<Vec<_>>(),
            (1000..1100).collect(),
            (2000..2100).collect(),
            (0..50).collect(),
            vec![],
        ] {
            let order = PortOrder::new(&ports, key);
            let visited: Vec<u16> = (0..ports.len() as u64)
                .map(|i| ports[order.nth(i) as usize])
                .collect();
            let mut sorted = visited.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, ports, "a bijection on the ports");
            let well_known = ports.iter().filter(|&&p| p < 1024).count();
            assert!(visited[..well_known].iter().all(|&p| p < 1024));
            assert!(visited[well_known..].iter().all(|&p| p >= 1024));
            if ports.len() > 64 {
                let steps = visited
                    .windows(2)
                    .filter(|w| u32::from(w[1]) == u32::from(w[0]) + 1)
                    .count();
                assert!(steps < ports.len() / 16, "scrambled within each tier");
            }
        }
    }

    #[test]
    fn is_a_bijection_for_many_sizes() {
        for n in [1u64, 2, 3, 4, 5, 26, 1056, 4097, 65536] {
            let p = Permutation::new(n, CookieKey::from_bytes([n as u8; 16]));
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let v = p.nth(i);
                assert!(v < n, "n={n}: {v} out of range");
                assert!(!seen[v as usize], "n={n}: {v} produced twice");
                seen[v as usize] = true;
            }
        }
    }

    #[test]
    fn order_is_scrambled_and_keyed() {
        let a = Permutation::new(65536, CookieKey::from_bytes([1; 16]));
        let b = Permutation::new(65536, CookieKey::from_bytes([2; 16]));
        let first_a: Vec<u64> = (0..64).map(|i| a.nth(i)).collect();
        let first_b: Vec<u64> = (0..64).map(|i| b.nth(i)).collect();
        assert_ne!(first_a, first_b);
        // Not sequential: few neighbours in a row.
        let steps = first_a.windows(2).filter(|w| w[1] == w[0] + 1).count();
        assert!(steps < 4, "{first_a:?}");
    }
}
