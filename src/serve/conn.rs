//! The connections of `phased serve`. One is accepted only while there is room for it:
//! at most `--max-connections`, `--max-connections-per-ip` from one address, and never
//! more than the descriptor limit leaves beside what the runs and the server itself
//! need, so that clients, however many, can never make a running deploy fail to open
//! a file or start a process. Past the overall cap the listener stops accepting (the
//! kernel holds the newcomers until a connection ends); past the per-address cap a
//! connection gets 503 and is closed.
//!
//! A connection is closed once it holds nothing the server owes: no complete request
//! head within `--header-timeout` (from its opening, or from the first byte of a later
//! request), no new request within `--idle-timeout` after an answer, or an answer the
//! client has not read for `--idle-timeout`. A request being answered (an event stream,
//! a followed log) keeps its connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// How long connections may wait, and how many there may be.
#[derive(Clone, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_per_address: usize,
}

/// Descriptors kept for the server's own use: standard streams, the listener, the
/// runtimes, the hub's and the notifier's database connections, the log watcher,
/// the notifier's HTTP connections.
const RESERVED_BASE: u64 = 64;

/// Descriptors kept for each worker's run: its database connection (three descriptors
/// on SQLite: the database, its WAL, its shared memory), its lease, and for each of
/// the 8 nodes it may run at once the node's log and the pipes of its process.
const RESERVED_PER_WORKER: u64 = 64;

/// Descriptors a connection may use: its socket, and the log file a followed log reads.
const PER_CONNECTION: u64 = 2;

/// The fewest connections allowed whatever the descriptor limit (else the server
/// could not answer at all).
const MIN_CONNECTIONS: usize = 4;

/// How many connections the server takes at once: `--max-connections`, lowered so that
/// the connections, the requests' database connections (`stores` of them) and
/// `workers` runs fit under the descriptor limit together. Also says why it was
/// lowered, when it was (`true`: the limit is too low even for the runs).
pub(super) fn room(limits: &Limits, workers: usize, stores: usize) -> (usize, Option<(bool, String)>) {
    let Some(limit) = descriptor_limit() else { return (limits.max_connections.max(1), None) };
    let reserved = RESERVED_BASE + RESERVED_PER_WORKER * workers as u64 + 3 * stores as u64;
    let fits = (limit.saturating_sub(reserved) / PER_CONNECTION) as usize;
    if fits >= limits.max_connections {
        return (limits.max_connections.max(1), None);
    }
    let allowed = fits.max(MIN_CONNECTIONS).min(limits.max_connections.max(1));
    let why = if fits < MIN_CONNECTIONS {
        let why = format!(
            "the descriptor limit (`ulimit -n`: {limit}) is too low for {workers} worker(s) beside the server's \
             {reserved} reserved descriptors: a run may fail to open files; raise it (`ulimit -n 4096`) or lower `--workers`"
        );
        (true, why)
    } else {
        let why = format!(
            "at most {allowed} connections at once: the descriptor limit (`ulimit -n`: {limit}) keeps {reserved} for \
             the runs and the server; raise it for more"
        );
        (false, why)
    };
    (allowed, Some(why))
}

/// The soft limit on open descriptors (`RLIMIT_NOFILE`), if there is one.
#[expect(unsafe_code, reason = "getrlimit has no safe wrapper in the standard library")]
fn descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable `rlimit`; getrlimit only writes it.
    let done = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (done == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Connections the kernel holds for the server while it accepts none (at its cap):
/// the standard 128 would drop the handshakes of more, leaving clients with
/// connections the server never knew (the kernel lowers it to `somaxconn`).
const BACKLOG: u32 = 1024;

/// A listener on `address`.
pub(super) fn listen(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As the standard library's listeners: a restarted server binds at once.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// Returns once `stop` is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Accepts and serves connections until `stop` is set, then waits for each open one to
/// finish what it answers (idle ones are closed at once).
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    allowed: usize,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(allowed));
    let addresses: Arc<Mutex<HashMap<IpAddr, usize>>> = Default::default();
    let limits = Arc::new(limits);
    let mut warned: Option<Instant> = None;
    loop {
        // Past the cap nothing is accepted: the kernel keeps the newcomers waiting.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors or memory (or a connection reset before it was
                    // taken): wait a little rather than spin.
                    if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(error = %e, "Could not accept a connection.");
                        warned = Some(Instant::now());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stopped(&mut stop) => break,
                    }
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let Some(address) = Address::enter(&addresses, peer.ip(), limits.max_per_address) else {
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, router.clone(), limits.clone(), stop.clone(), (slot, address)));
    }
    drop(listener);
    // Every connection gives its slot back when it ends.
    let _ = slots.acquire_many(allowed as u32).await;
}

/// Answers 503 to a connection from an address that has too many, and closes it.
fn refuse(stream: TcpStream) {
    let body = r#"{"error": {"code": "too-many-connections", "message": "too many connections from this address (--max-connections-per-ip); close some first"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // A fresh socket's send buffer takes it whole; a client that cannot take it does
    // not get it.
    let _ = stream.try_write(response.as_bytes());
}

/// A connection counted against its address; uncounted when dropped.
struct Address {
    ip: IpAddr,
    all: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Address {
    fn enter(all: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Address> {
        let ip = ip.to_canonical();
        let mut map = all.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Address { ip, all: all.clone() })
    }
}

impl Drop for Address {
    fn drop(&mut self) {
        let mut map = self.all.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves one connection until it ends, is found holding nothing past its time, or the
/// server stops. `_held` (its slot and its address's count) is given back at the end.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Arc<Limits>,
    mut stop: watch::Receiver<bool>,
    _held: (tokio::sync::OwnedSemaphorePermit, Address),
) {
    let activity = Arc::new(Activity::new());
    let io = hyper_util::rt::TokioIo::new(Watched { inner: stream, activity: activity.clone() });
    let service = {
        let activity = activity.clone();
        let router = hyper_util::service::TowerToHyperService::new(router);
        hyper::service::service_fn(move |request| {
            let busy = Busy::start(&activity);
            let answer = hyper::service::Service::call(&router, request);
            async move {
                let response = answer.await?;
                Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    // Timed here instead (hyper's timer would also end a connection kept alive between
    // requests after the header timeout).
    http.header_read_timeout(None);
    let mut conn = std::pin::pin!(http.serve_connection(io, service));
    let mut tick = tokio::time::interval(
        limits
            .header_timeout
            .min(limits.idle_timeout)
            .div_f32(4.0)
            .clamp(Duration::from_millis(50), Duration::from_secs(1)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "A connection ended with an error.");
                }
                return;
            }
            // Dropping the connection closes it.
            _ = tick.tick() => if let Some(why) = activity.expired(&limits) {
                tracing::debug!(why, "Closing a connection.");
                return;
            },
            _ = stopped(&mut stop), if !stopping => {
                if activity.busy.load(Ordering::SeqCst) == 0 {
                    return;
                }
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What a connection is doing, in milliseconds since it was opened (plus one: 0 is
/// "not now").
struct Activity {
    opened: Instant,
    /// Requests being answered (their answer not yet written whole).
    busy: AtomicUsize,
    /// Whether an answer was written: waiting then is idle time, not a slow head.
    answered: AtomicBool,
    /// When the connection last had nothing left to answer.
    idle_since: AtomicU64,
    /// When the first byte of the next request came, while idle.
    head_since: AtomicU64,
    /// When writing started to wait for a client that does not read.
    blocked_since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            busy: AtomicUsize::new(0),
            answered: AtomicBool::new(false),
            idle_since: AtomicU64::new(1),
            head_since: AtomicU64::new(0),
            blocked_since: AtomicU64::new(0),
        }
    }

    fn stamp(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64 + 1
    }

    /// Why the connection should be closed now, if it should.
    fn expired(&self, limits: &Limits) -> Option<&'static str> {
        let now = self.stamp();
        let past = |since: u64, limit: Duration| since != 0 && now.saturating_sub(since) >= limit.as_millis() as u64;
        if past(self.blocked_since.load(Ordering::SeqCst), limits.idle_timeout) {
            return Some("its answer was not read within the idle timeout");
        }
        if self.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        if !self.answered.load(Ordering::SeqCst) {
            return past(1, limits.header_timeout).then_some("no request head within the header timeout");
        }
        match self.head_since.load(Ordering::SeqCst) {
            0 => past(self.idle_since.load(Ordering::SeqCst), limits.idle_timeout)
                .then_some("no new request within the idle timeout"),
            head => past(head, limits.header_timeout).then_some("no complete request head within the header timeout"),
        }
    }
}

/// A request being answered, until its answer is written whole (or dropped).
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Busy {
        activity.busy.fetch_add(1, Ordering::SeqCst);
        activity.head_since.store(0, Ordering::SeqCst);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            activity.answered.store(true, Ordering::SeqCst);
            activity.idle_since.store(activity.stamp(), Ordering::SeqCst);
        }
    }
}

/// An answer's body, counting its request as busy until it is written or dropped.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noting when a request's first byte comes and when writing waits.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    fn wrote<T>(&self, result: &Poll<std::io::Result<T>>) {
        let blocked = &self.activity.blocked_since;
        match result {
            Poll::Pending => {
                if blocked.load(Ordering::SeqCst) == 0 {
                    blocked.store(self.activity.stamp(), Ordering::SeqCst);
                }
            }
            Poll::Ready(_) => blocked.store(0, Ordering::SeqCst),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        let a = &self.activity;
        if matches!(read, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && a.busy.load(Ordering::SeqCst) == 0
            && a.head_since.load(Ordering::SeqCst) == 0
        {
            a.head_since.store(a.stamp(), Ordering::SeqCst);
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        self.wrote(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        self.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_per_address: 2,
        }
    }

    #[test]
    fn an_address_holds_at_most_its_share_and_gets_it_back() {
        let all = Arc::new(Mutex::new(HashMap::new()));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = Address::enter(&all, ip, 2).unwrap();
        let _b = Address::enter(&all, ip, 2).unwrap();
        assert!(Address::enter(&all, ip, 2).is_none());
        assert!(Address::enter(&all, "::ffff:127.0.0.1".parse().unwrap(), 2).is_none(), "the same address in IPv6");
        assert!(Address::enter(&all, "127.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(Address::enter(&all, ip, 2).is_some());
    }

    #[test]
    fn a_connection_is_kept_while_it_is_answered() {
        let activity = Arc::new(Activity::new());
        let busy = Busy::start(&activity);
        let zero = Limits { header_timeout: Duration::ZERO, idle_timeout: Duration::ZERO, ..limits() };
        assert_eq!(activity.expired(&zero), None);
        drop(busy);
        assert!(activity.expired(&zero).is_some());
        assert_eq!(activity.expired(&limits()), None);
    }
}
