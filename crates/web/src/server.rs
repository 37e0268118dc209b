//! The HTTP/1.1 accept loop: hyper connections with a bounded life.
//!
//! `axum::serve` keeps every connection for as long as the client likes, so a
//! few thousand idle sockets (or one header byte a second) could take the
//! service down and keep it from exiting. Here every connection is bounded:
//!
//! - **Connection caps.** At most `max_connections` at once, and at most
//!   `max_per_address` from one visitor ([`limit_key`]: one IPv4 address, one
//!   IPv6 prefix). Over the per-visitor cap a connection is refused at once,
//!   without reading from it. When all slots are taken, the oldest connection
//!   that has not yet sent a complete request is closed to make room, so idle
//!   sockets from many addresses cannot lock out a visitor who sends a request.
//! - **Header timeout.** The request line and headers must arrive within
//!   `header_timeout` (hyper's `header_read_timeout`, also between keep-alive
//!   requests), which ends slowloris clients; a request body (at most 8 KiB
//!   here) must then arrive within another `header_timeout`.
//! - **Idle timeout.** A connection on which no byte moved, either way, for
//!   `idle_timeout` is closed: a stalled upload, a client that stopped reading.
//!   A live event stream stays open, because its keep-alive comments count.
//! - **Bounded shutdown.** When `shutdown` completes, accepting stops, every
//!   connection is asked to finish its current response and close, and after
//!   `shutdown_grace` whatever is still open is dropped: a slow client cannot
//!   delay the exit.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::Config;
use crate::limits::limit_key;
use crate::routes::ConnInfo;

/// Largest read buffer of one connection: request head plus what is buffered
/// of a body. hyper's default (~400 KB) times `max_connections` would be far
/// more memory than the service needs.
const MAX_BUF: usize = 32 * 1024;
/// Largest request line plus headers; over it hyper answers 431.
const MAX_HEADER: usize = 16 * 1024;

/// What a connection-limited client receives, written without reading its request.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 81\r\nretry-after: 5\r\nconnection: close\r\n\r\nToo many connections (from your address, or in all); try again in a few seconds.\n";

/// Connection limits and timeouts of [`run`].
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once, all clients together.
    pub max_connections: usize,
    /// Connections open at once from one visitor (see [`limit_key`]).
    pub max_per_address: usize,
    /// IPv6 visitors are counted per prefix of this length.
    pub ipv6_prefix: u8,
    /// Time allowed for a request's line and headers to arrive, and again for its body.
    pub header_timeout: Duration,
    /// Time a connection may go without a byte read or written.
    pub idle_timeout: Duration,
    /// Time in-flight requests get to finish after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The limits an operator configured.
    pub fn from_config(c: &Config) -> Limits {
        Limits {
            max_connections: c.max_connections.max(1),
            max_per_address: c.max_connections_per_address.max(1),
            ipv6_prefix: c.ipv6_prefix,
            header_timeout: c.header_timeout,
            idle_timeout: c.idle_timeout,
            shutdown_grace: c.shutdown_grace,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes. Then it stops
/// accepting, asks every connection to close after its current response, runs
/// `on_shutdown` (e.g. cancelling scans, so that their event streams end),
/// waits for connections until `shutdown_grace` has passed since the signal,
/// and drops the rest.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    on_shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    ensure_fd_limit(limits.max_connections);
    let shared = Arc::new(Shared {
        global: Arc::new(Semaphore::new(limits.max_connections)),
        per_key: Mutex::new(HashMap::new()),
        waiting: Mutex::new(BTreeMap::new()),
        router,
        limits,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut next_id: u64 = 0;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or the peer gave up: back off briefly.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        next_id += 1;
        if let Some(admitted) = shared.admit(stream, peer, next_id) {
            conns.spawn(connection(shared.clone(), admitted, stop_rx.clone()));
        }
    }
    drop(listener);
    let open = conns.len();
    tracing::info!("shutting down: {open} connection(s) open");
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + shared.limits.shutdown_grace;
    let drain = tokio::time::timeout_at(deadline, async {
        while conns.join_next().await.is_some() {}
    });
    let ((), drained) = tokio::join!(on_shutdown, drain);
    if drained.is_err() {
        tracing::warn!(
            "{} connection(s) still open after the shutdown grace; closing them",
            conns.len()
        );
    }
    conns.shutdown().await;
    Ok(())
}

/// File descriptors the process needs besides its connections (listener,
/// database, raw sockets, resolver, log).
const SPARE_FDS: u64 = 64;

/// Raises the soft open-file limit (often 1,024) towards the hard one so that
/// `max_connections` sockets fit; warns when they cannot, since accept would
/// then fail with "too many open files" before the cap is reached.
fn ensure_fd_limit(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let needed = max_connections as u64 + SPARE_FDS;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= needed {
        return;
    }
    let target = needed.min(hard);
    if target > soft && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        tracing::info!("raised the open-file limit from {soft} to {target}");
    }
    if target < needed {
        tracing::warn!(
            "the open-file limit ({target}) is below --max-connections ({max_connections}) plus {SPARE_FDS}; raise it (ulimit -n, LimitNOFILE=) or lower --max-connections"
        );
    }
}

struct Shared {
    router: Router,
    limits: Limits,
    global: Arc<Semaphore>,
    /// Open connections per visitor key; keys at zero are removed.
    per_key: Mutex<HashMap<IpAddr, usize>>,
    /// Connections that have not yet sent a request, oldest (lowest id) first.
    waiting: Mutex<BTreeMap<u64, Arc<Control>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent even if a holder panicked: every update is one call.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection's slot, and what lets the accept loop hand that slot to a
/// newcomer while the connection has not sent a request.
struct Control {
    id: u64,
    started: AtomicBool,
    evict: Notify,
    /// The global slot; taken by an eviction, else released when the connection ends.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

/// A connection that passed the caps, with what it holds.
struct Admitted {
    stream: TcpStream,
    info: ConnInfo,
    control: Arc<Control>,
    _key: KeyGuard,
}

/// One connection counted against its visitor key until dropped.
struct KeyGuard {
    shared: Arc<Shared>,
    key: IpAddr,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        let mut map = lock(&self.shared.per_key);
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl Shared {
    /// Applies the caps to a new connection; refuses it (a 503 written without
    /// reading, then close) when its visitor is at the cap or every slot is busy
    /// with connections that have sent requests.
    fn admit(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr, id: u64) -> Option<Admitted> {
        let key = limit_key(peer.ip(), self.limits.ipv6_prefix);
        {
            let mut map = lock(&self.per_key);
            let n = map.entry(key).or_insert(0);
            if *n >= self.limits.max_per_address {
                drop(map);
                tracing::debug!("refused {peer}: {key} is at its connection cap");
                refuse(stream);
                return None;
            }
            *n += 1;
        }
        let guard = KeyGuard {
            shared: self.clone(),
            key,
        };
        let permit = match self.global.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => match self.take_oldest_waiting_slot() {
                Some(p) => p,
                None => {
                    tracing::debug!("refused {peer}: all connection slots are busy");
                    refuse(stream);
                    return None;
                }
            },
        };
        let local = stream.local_addr().unwrap_or(peer);
        let _ = stream.set_nodelay(true);
        let control = Arc::new(Control {
            id,
            started: AtomicBool::new(false),
            evict: Notify::new(),
            permit: Mutex::new(Some(permit)),
        });
        lock(&self.waiting).insert(id, control.clone());
        Some(Admitted {
            stream,
            info: ConnInfo { peer, local },
            control,
            _key: guard,
        })
    }

    /// Takes the slot of the oldest connection that has not sent a request
    /// yet, and tells it to close. The slot changes hands at once, so there is
    /// never more than `max_connections` slots, nor a wait for one.
    fn take_oldest_waiting_slot(&self) -> Option<OwnedSemaphorePermit> {
        loop {
            let (_, victim) = lock(&self.waiting).pop_first()?;
            if let Some(p) = lock(&victim.permit).take() {
                // `notify_one` keeps the wake-up if the task is not waiting right now.
                victim.evict.notify_one();
                return Some(p);
            }
        }
    }

    fn started(&self, control: &Control) {
        if !control.started.swap(true, Ordering::Relaxed) {
            lock(&self.waiting).remove(&control.id);
        }
    }
}

fn refuse(stream: TcpStream) {
    // Best effort and never blocking: a full socket buffer just gets the close.
    let _ = stream.try_write(BUSY);
}

/// Removes a connection from the eviction queue and frees its slot when it ends.
struct Release<'a>(&'a Shared, &'a Control);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        lock(&self.0.waiting).remove(&self.1.id);
        lock(&self.1.permit).take();
    }
}

async fn connection(shared: Arc<Shared>, conn: Admitted, mut stop: watch::Receiver<bool>) {
    let Admitted {
        stream,
        info,
        control,
        _key,
    } = conn;
    let _release = Release(&shared, &control);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let shared = shared.clone();
        let control = control.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            shared.started(&control);
            req.extensions_mut().insert(ConnectInfo(info));
            let req = req.map(|body| Deadline {
                inner: body,
                sleep: Box::pin(tokio::time::sleep(shared.limits.header_timeout)),
            });
            shared.router.clone().oneshot(req)
        })
    };
    let limits = &shared.limits;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_BUF)
        .max_header_size(MAX_HEADER);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let check = (limits.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(check);
    let mut draining = *stop.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection from {}: {e}", info.peer);
                }
                return;
            }
            _ = stop.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = control.evict.notified() => {
                tracing::debug!("closed idle connection from {} to make room", info.peer);
                return;
            }
            _ = tick.tick() => {
                if activity.idle() >= limits.idle_timeout {
                    tracing::debug!("closed connection from {}: idle for {:?}", info.peer, limits.idle_timeout);
                    return;
                }
            }
        }
    }
}

/// When a byte last moved on a connection.
struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch`.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A socket that records [`Activity`] on every read or write that moved bytes.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that fails when it has not fully arrived in time, so a
/// client cannot hold a connection by sending its body a byte at a time.
struct Deadline {
    inner: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimeout;

impl hyper::body::Body for Deadline {
    type Data = axum::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        assert!(head.starts_with("HTTP/1.1 503 "));
    }

    #[test]
    fn activity_counts_from_the_last_byte() {
        let a = Activity::new();
        std::thread::sleep(Duration::from_millis(30));
        assert!(a.idle() >= Duration::from_millis(30));
        a.touch();
        assert!(a.idle() < Duration::from_millis(30));
    }
}
