//! Scan targets: an IP address, a CIDR block or a host name.

use std::net::{IpAddr, ToSocketAddrs};

use ipnet::IpNet;

/// Largest CIDR block a single command will expand (a /16 of IPv4).
pub const MAX_TARGET_ADDRESSES: usize = 65_536;

/// Why a target could not be turned into addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The text is not an address, a CIDR block or a resolvable host name.
    #[error(
        "cannot resolve {0:?}: give an IPv4/IPv6 address, a CIDR block (198.18.0.0/24) or a resolvable host name"
    )]
    Unresolvable(String),
    /// The CIDR block holds more addresses than allowed.
    #[error("{0} holds more than {MAX_TARGET_ADDRESSES} addresses; split it into smaller blocks")]
    TooLarge(String),
}

/// Expands `target` into the addresses to scan. Host names resolve through the
/// system resolver; the first IPv4 address is preferred, else the first IPv6.
pub fn resolve(target: &str) -> Result<Vec<IpAddr>, TargetError> {
    let target = target.trim();
    let bare = target
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(target);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    if target.contains('/') {
        let net: IpNet = target
            .parse()
            .map_err(|_| TargetError::Unresolvable(target.to_string()))?;
        let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
        if host_bits > 16 {
            return Err(TargetError::TooLarge(target.to_string()));
        }
        // `hosts()` skips an IPv4 block's network and broadcast addresses, and keeps
        // every address of a /31 or /32 (RFC 3021).
        return Ok(net.hosts().collect());
    }
    if target.is_empty() || target.starts_with('-') {
        return Err(TargetError::Unresolvable(target.to_string()));
    }
    let addrs: Vec<IpAddr> = (target, 0)
        .to_socket_addrs()
        .map_err(|_| TargetError::Unresolvable(target.to_string()))?
        .map(|a| a.ip())
        .collect();
    let pick = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| TargetError::Unresolvable(target.to_string()))?;
    Ok(vec![pick])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_blocks() {
        assert_eq!(
            resolve("198.18.0.2").unwrap(),
            ["198.18.0.2".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(resolve("::1").unwrap(), ["::1".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            resolve("[::1]").unwrap(),
            ["::1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(resolve("198.18.0.0/30").unwrap().len(), 2);
        assert_eq!(
            resolve("198.18.0.7/32").unwrap(),
            ["198.18.0.7".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(resolve("198.18.0.0/16").unwrap().len(), 65_534);
        assert_eq!(resolve("localhost").unwrap().len(), 1);
    }

    #[test]
    fn rejects_bad_targets() {
        assert!(matches!(
            resolve("198.18.0.0/15"),
            Err(TargetError::TooLarge(_))
        ));
        assert!(matches!(
            resolve("300.1.1.1/24"),
            Err(TargetError::Unresolvable(_))
        ));
        assert!(matches!(resolve(""), Err(TargetError::Unresolvable(_))));
        assert!(matches!(
            resolve("no-such-host.invalid"),
            Err(TargetError::Unresolvable(_))
        ));
    }
}
