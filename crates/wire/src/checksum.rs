//! The internet checksum (RFC 1071) and the TCP/UDP/ICMPv6 pseudo-header sums.
//!
//! A *partial sum* here is a `u32` holding a ones'-complement sum already folded
//! to 16 bits (so at most `0xFFFF`). Partial sums of separate pieces can be
//! stored and added later with [`combine`], which is how the builders
//! precompute the constant part of a checksum once and add only the words that
//! change per probe. Two pieces combine correctly when the first has an even
//! length (the 16-bit words then line up); [`finish`] turns a sum into the value
//! written into a header.
//!
//! ```
//! use harbormaster_wire::checksum::{checksum, combine, finish, sum};
//! let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]; // RFC 1071 §3
//! assert_eq!(sum(&data), 0xddf2);
//! assert_eq!(checksum(&data), 0x220d);
//! assert_eq!(finish(combine(sum(&data[..4]), sum(&data[4..]))), 0x220d);
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Folds a wide ones'-complement accumulator to 16 bits (end-around carry).
#[inline]
const fn fold64(mut acc: u64) -> u32 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// The partial sum of `data` read as big-endian 16-bit words; an odd final
/// byte is padded with a zero byte on the right, as RFC 1071 says.
pub fn sum(data: &[u8]) -> u32 {
    // A u64 accumulator cannot overflow for any slice that fits in memory
    // (2^48 words of 0xFFFF), so folding once at the end is enough.
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    fold64(acc)
}

/// Adds two partial sums (any `u32` values are accepted).
#[inline]
pub const fn combine(a: u32, b: u32) -> u32 {
    fold64(a as u64 + b as u64)
}

/// The checksum field value for a partial sum: its ones' complement.
#[inline]
pub const fn finish(sum: u32) -> u16 {
    !(fold64(sum as u64) as u16)
}

/// The internet checksum of `data`: `finish(sum(data))`.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Whether a partial sum taken over data *including* its checksum field is
/// correct (folds to `0xFFFF`, ones'-complement negative zero).
#[inline]
pub const fn is_valid(sum: u32) -> bool {
    fold64(sum as u64) == 0xffff
}

/// The partial sum of the IPv4 pseudo-header (RFC 9293 §3.1, RFC 768):
/// source, destination, zero, protocol, and the transport length in bytes.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let (s, d) = (src.octets(), dst.octets());
    let acc = u64::from(u16::from_be_bytes([s[0], s[1]]))
        + u64::from(u16::from_be_bytes([s[2], s[3]]))
        + u64::from(u16::from_be_bytes([d[0], d[1]]))
        + u64::from(u16::from_be_bytes([d[2], d[3]]))
        + u64::from(protocol)
        + u64::from(length);
    fold64(acc)
}

/// The partial sum of the IPv6 pseudo-header (RFC 8200 §8.1): source,
/// destination, the 32-bit upper-layer length, three zero bytes and the next
/// header value of the upper-layer protocol.
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u32 {
    let acc = u64::from(sum(&src.octets()))
        + u64::from(sum(&dst.octets()))
        + u64::from(length >> 16)
        + u64::from(length & 0xffff)
        + u64::from(next_header);
    fold64(acc)
}

/// The pseudo-header sum for either family, or `None` when the addresses are
/// of different families or `length` does not fit an IPv4 pseudo-header.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: u8, length: u32) -> Option<u32> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(pseudo_header_v4(
            s,
            d,
            protocol,
            u16::try_from(length).ok()?,
        )),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(pseudo_header_v6(&s, &d, protocol, length)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook definition, written as differently as possible from `sum`:
    /// one 32-bit add per word with a carry fold after every step.
    fn naive(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        let mut i = 0;
        while i < data.len() {
            let hi = u32::from(data[i]) << 8;
            let lo = data.get(i + 1).map_or(0, |&b| u32::from(b));
            s += hi | lo;
            s = (s & 0xffff) + (s >> 16);
            i += 2;
        }
        !(s as u16)
    }

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), 0x220d);
    }

    #[test]
    fn empty_and_odd_lengths() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(checksum(&[]), 0xffff);
        // An odd byte is the high half of a zero-padded word.
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn carries_fold_around() {
        assert_eq!(sum(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
        assert_eq!(combine(0xffff, 0x0001), 0x0001);
        assert_eq!(combine(u32::MAX, u32::MAX), fold64(2 * u64::from(u32::MAX)));
        assert_eq!(finish(0x1_0000), !1);
    }

    #[test]
    fn matches_naive_and_etherparse_on_random_data() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for len in 0..600 {
            let data: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
            assert_eq!(checksum(&data), naive(&data), "len {len}");
            let theirs = etherparse::checksum::Sum16BitWords::new()
                .add_slice(&data)
                .ones_complement();
            // etherparse sums native-endian words: its result goes on the wire
            // with to_ne_bytes.
            let theirs = u16::from_be_bytes(theirs.to_ne_bytes());
            assert_eq!(checksum(&data), theirs, "len {len}");
            // Splitting at any even offset and combining gives the same result.
            let cut = (len / 2) & !1;
            assert_eq!(combine(sum(&data[..cut]), sum(&data[cut..])), sum(&data));
        }
    }

    #[test]
    fn inserted_checksum_verifies() {
        let mut data = [
            0x45, 0x00, 0x00, 0x1c, 0, 0, 0, 0, 0x40, 0x01, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = checksum(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(is_valid(sum(&data)));
        data[0] ^= 1;
        assert!(!is_valid(sum(&data)));
    }

    #[test]
    fn pseudo_headers_match_their_byte_layout() {
        let s4 = Ipv4Addr::new(192, 0, 2, 10);
        let d4 = Ipv4Addr::new(198, 51, 100, 20);
        let mut v4 = Vec::new();
        v4.extend_from_slice(&s4.octets());
        v4.extend_from_slice(&d4.octets());
        v4.extend_from_slice(&[0, 6, 0x01, 0x2c]);
        assert_eq!(pseudo_header_v4(s4, d4, 6, 300), sum(&v4));

        let s6: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let d6: Ipv6Addr = "2001:db8:1::20".parse().unwrap();
        let mut v6 = Vec::new();
        v6.extend_from_slice(&s6.octets());
        v6.extend_from_slice(&d6.octets());
        v6.extend_from_slice(&0x0001_0203u32.to_be_bytes());
        v6.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(pseudo_header_v6(&s6, &d6, 58, 0x0001_0203), sum(&v6));

        assert_eq!(pseudo_header(s4.into(), d4.into(), 6, 300), Some(sum(&v4)));
        assert_eq!(pseudo_header(s4.into(), d6.into(), 6, 300), None);
        assert_eq!(pseudo_header(s4.into(), d4.into(), 6, 70_000), None);
    }
}
