//! Reverse DNS of visitors, asynchronously: a lookup never holds a thread, gives
//! up after [`LOOKUP_TIMEOUT`], and at most [`MAX_IN_FLIGHT`] run at once (a
//! request over the cap simply shows no name). Answers, names and failures
//! alike, are cached for a while in a small bounded cache, so a page reload or
//! a flood from one address costs one query.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use tokio::sync::Semaphore;

/// How long one lookup may take before the page is shown without a name.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(1500);
/// Lookups in flight at once.
pub const MAX_IN_FLIGHT: usize = 32;
/// Addresses remembered.
pub const CACHE_ENTRIES: usize = 1024;
/// Longest time a name is kept, whatever its TTL says.
pub const MAX_POSITIVE_TTL: Duration = Duration::from_secs(3600);
/// How long "no name" (NXDOMAIN, timeout, server failure) is kept.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(300);

/// Longest host name DNS can carry (RFC 1035, without the final dot).
const MAX_NAME_LEN: usize = 253;

/// The reverse-DNS resolver of the service; cheap to clone.
#[derive(Clone)]
pub struct ReverseDns(Option<Arc<Inner>>);

struct Inner {
    resolver: TokioResolver,
    in_flight: Arc<Semaphore>,
    cache: Mutex<HashMap<IpAddr, (Option<String>, Instant)>>,
}

impl std::fmt::Debug for ReverseDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ReverseDns(on)"
        } else {
            "ReverseDns(off)"
        })
    }
}

impl ReverseDns {
    /// No lookups at all.
    pub fn off() -> ReverseDns {
        ReverseDns(None)
    }

    /// A resolver asking `servers` over UDP, or the name servers of
    /// /etc/resolv.conf when `None`; lookups are off (with a log line) when
    /// that file cannot be read.
    pub fn new(servers: Option<&[SocketAddr]>) -> ReverseDns {
        let config = match servers {
            Some(list) => ResolverConfig::from_parts(
                None,
                Vec::new(),
                list.iter()
                    .map(|a| NameServerConfig::new(*a, Protocol::Udp))
                    .collect::<Vec<_>>(),
            ),
            None => match hickory_resolver::system_conf::read_system_conf() {
                Ok((config, _)) => config,
                Err(e) => {
                    tracing::warn!(
                        "reverse DNS is off: the system resolver configuration could not be read: {e}"
                    );
                    return ReverseDns::off();
                }
            },
        };
        if config.name_servers().is_empty() {
            tracing::warn!("reverse DNS is off: no name server is configured");
            return ReverseDns::off();
        }
        let mut opts = ResolverOpts::default();
        opts.timeout = LOOKUP_TIMEOUT;
        opts.attempts = 1;
        // Our own cache below keeps failures too and is bounded; the resolver's
        // is not needed.
        opts.cache_size = 0;
        opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts)
                .build();
        ReverseDns(Some(Arc::new(Inner {
            resolver,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            cache: Mutex::new(HashMap::new()),
        })))
    }

    /// The name of `ip`, if it has one and it can be found in time. Returns at
    /// once, without a name, when lookups are off or too many are running.
    pub async fn name(&self, ip: IpAddr) -> Option<String> {
        let inner = self.0.as_ref()?;
        let now = Instant::now();
        if let Some((name, until)) = inner.cache().get(&ip)
            && *until > now
        {
            return name.clone();
        }
        let Ok(_permit) = inner.in_flight.clone().try_acquire_owned() else {
            tracing::debug!("reverse DNS skipped for {ip}: too many lookups in flight");
            return None;
        };
        // The resolver's own timeout covers one attempt; this bounds the whole call.
        let lookup = tokio::time::timeout(
            LOOKUP_TIMEOUT + Duration::from_millis(100),
            inner.resolver.reverse_lookup(ip),
        )
        .await;
        let (name, ttl) = match lookup {
            Ok(Ok(found)) => {
                let ttl = found
                    .valid_until()
                    .saturating_duration_since(Instant::now())
                    .min(MAX_POSITIVE_TTL);
                let name = found.iter().find_map(|ptr| clean(&ptr.to_string()));
                (name, if ttl.is_zero() { NEGATIVE_TTL } else { ttl })
            }
            _ => (None, NEGATIVE_TTL),
        };
        inner.store(ip, name.clone(), Instant::now() + ttl);
        name
    }
}

/// A displayable host name from a PTR target, or `None` when it is not one
/// (too long, an address, odd bytes).
fn clean(raw: &str) -> Option<String> {
    let name = raw.strip_suffix('.').unwrap_or(raw);
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && name.parse::<IpAddr>().is_err();
    ok.then(|| name.to_ascii_lowercase())
}

impl Inner {
    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Option<String>, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self, ip: IpAddr, name: Option<String>, until: Instant) {
        let mut cache = self.cache();
        if cache.len() >= CACHE_ENTRIES && !cache.contains_key(&ip) {
            let now = Instant::now();
            cache.retain(|_, (_, u)| *u > now);
            if cache.len() >= CACHE_ENTRIES {
                // Still full of live entries: drop the one that expires first.
                if let Some(first) = cache.iter().min_by_key(|(_, (_, u))| *u).map(|(k, _)| *k) {
                    cache.remove(&first);
                }
            }
        }
        cache.insert(ip, (name, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(
            clean("host-1.example.net."),
            Some("host-1.example.net".into())
        );
        assert_eq!(clean("HOST.Example"), Some("host.example".into()));
        assert_eq!(clean("."), None);
        assert_eq!(clean("198.51.100.1."), None);
        assert_eq!(clean("a<b>.example."), None);
        assert_eq!(clean(&"a".repeat(300)), None);
    }

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let dns = ReverseDns::new(Some(&["127.0.0.1:9".parse().unwrap()]));
        let inner = dns.0.as_ref().unwrap();
        let later = Instant::now() + Duration::from_secs(60);
        for i in 0..(CACHE_ENTRIES as u32 + 100) {
            inner.store(IpAddr::from(i.to_be_bytes()), None, later);
        }
        assert_eq!(inner.cache().len(), CACHE_ENTRIES);
    }
}
