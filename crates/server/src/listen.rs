//! The accept loop and each connection's life: hyper driven directly (axum::serve has no
//! timeouts and no connection cap), so that idle, slowloris and slow-body connections are
//! closed and a flood of connections cannot take every file descriptor.
//!
//! Timeouts follow Go's `net/http` model: a connection's first request has
//! `header_read_timeout` from accept to its last header line; between requests a keep-alive
//! connection may stay silent for `idle_timeout`, and once the next request's first byte
//! arrives its headers have `header_read_timeout`; a request body has `body_read_timeout`
//! from its headers to its last byte. A request being answered has no deadline here.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use futures_util::future::Either;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::Service;

use crate::peer::{PeerAddr, route};
use crate::ping;
use crate::state::{AppState, ConnectionLimits};

/// How long the accept loop waits after an error such as EMFILE before it tries again: a
/// busy loop would take a core and log without end, returning would stop the server.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` (and the ping paths, see [`Connection`]) until `shutdown` completes; then
/// stops accepting, lets every connection finish the request it is answering, and returns
/// when all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = state.config.limits;
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http2().enable_connect_protocol();
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Dropped when `shutdown` completes: connections see `closed()` and shut down gracefully.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    // Every connection task holds a receiver; `closed()` completes when the last one ends.
    let (close_tx, close_rx) = watch::channel(());
    let mut backing_off = false;
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = signal_tx.closed() => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    if !backing_off {
                        tracing::warn!(error = %e, "cannot accept connections; retrying every {} ms", ACCEPT_BACKOFF.as_millis());
                        backing_off = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                        _ = signal_tx.closed() => break,
                    }
                }
            },
            _ = signal_tx.closed() => break,
        };
        if backing_off {
            tracing::info!("accepting connections again");
            backing_off = false;
        }
        let activity = Arc::new(Activity::new());
        let connection = Connection {
            router: router.clone(),
            state: state.clone(),
            peer: PeerAddr(remote.ip().to_string().into()),
            activity: activity.clone(),
            body_read_timeout: limits.body_read_timeout,
        };
        let io = TokioIo::new(WatchedIo {
            inner: stream,
            activity: activity.clone(),
        });
        let builder = builder.clone();
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            let conn = builder.serve_connection_with_upgrades(io, connection);
            let mut conn = std::pin::pin!(conn);
            let mut signal_closed = std::pin::pin!(signal_tx.closed());
            let mut shutting_down = false;
            let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
                .max(Duration::from_millis(10));
            let watchdog = tokio::time::sleep(tick);
            let mut watchdog = std::pin::pin!(watchdog);
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = &mut signal_closed, if !shutting_down => {
                        shutting_down = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    _ = &mut watchdog => {
                        let now = Instant::now();
                        match activity.deadline(&limits) {
                            Some(deadline) if deadline <= now => {
                                tracing::debug!("connection closed: timed out");
                                break;
                            }
                            // A deadline can come earlier than computed now (the first byte
                            // of a request after idling), so it is looked at every tick.
                            Some(deadline) => watchdog.as_mut().reset(deadline.min(now + tick)),
                            None => watchdog.as_mut().reset(now + tick),
                        }
                    }
                }
            }
            drop(permit);
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
    Ok(())
}

/// Errors of one connection that was aborted before it was accepted: the next accept works.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What a connection is doing, shared by its reader ([`WatchedIo`]), its requests
/// ([`Connection`]) and its watchdog. Times are milliseconds since `start`.
struct Activity {
    start: Instant,
    /// Requests being answered.
    in_flight: AtomicU32,
    /// When the last request was answered (the connection became idle).
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived; [`NO_BYTE`] while none did. Accept
    /// counts as the first request's first byte.
    request_since: AtomicU64,
}

const NO_BYTE: u64 = u64::MAX;

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            request_since: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// When the connection is to be closed if nothing changes; none while a request is
    /// being answered.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let at = |ms: u64, timeout: Duration| self.start + Duration::from_millis(ms) + timeout;
        Some(match self.request_since.load(Ordering::Relaxed) {
            NO_BYTE => at(self.idle_since.load(Ordering::Relaxed), limits.idle_timeout),
            since => at(since, limits.header_read_timeout),
        })
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.request_since.load(Ordering::Relaxed) == NO_BYTE
        {
            self.request_since.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn request_answered(&self) {
        self.request_since.store(NO_BYTE, Ordering::Relaxed);
        self.idle_since.store(self.now_ms(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, telling [`Activity`] when bytes arrive.
struct WatchedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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

/// One connection's requests: `/ping/…` paths go to [`ping::ping_direct`], which answers
/// those of a ping route's shape itself and hands the rest to the router, like every other
/// path.
#[derive(Clone)]
struct Connection {
    router: Router,
    state: AppState,
    peer: PeerAddr,
    activity: Arc<Activity>,
    body_read_timeout: Duration,
}

type PingFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Connection {
    type Response = Response;
    type Error = Infallible;
    type Future = Answered<Either<PingFuture, <Router as Service<Request>>::Future>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        self.activity.request_started();
        // A request without a body (most pings) is not wrapped: nothing to time out.
        let request = if request.body().is_end_stream() {
            request.map(Body::new)
        } else {
            let deadline = Instant::now() + self.body_read_timeout;
            let timeout = self.body_read_timeout;
            request.map(|body| {
                Body::new(DeadlineBody {
                    inner: body,
                    deadline,
                    timeout,
                    sleep: None,
                })
            })
        };
        let answer = if request.uri().path().starts_with("/ping/") {
            let connection = self.clone();
            Either::Left(Box::pin(async move {
                Ok(ping::ping_direct(
                    connection.state,
                    connection.peer,
                    connection.router,
                    request,
                )
                .await)
            }) as PingFuture)
        } else {
            Either::Right(route(&mut self.router.clone(), &self.peer, request))
        };
        Answered {
            inner: answer,
            activity: Some(self.activity.clone()),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer; the connection counts as idle from when it is ready (or dropped).
    struct Answered<F> {
        #[pin]
        inner: F,
        activity: Option<Arc<Activity>>,
    }

    impl<F> PinnedDrop for Answered<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(activity) = this.project().activity.take() {
                activity.request_answered();
            }
        }
    }
}

impl<F: Future> Future for Answered<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let Some(activity) = this.activity.take() {
            activity.request_answered();
        }
        Poll::Ready(output)
    }
}

/// A request body that fails once `deadline` passes before its end.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    timeout: Duration,
    /// Made on the first wait only: a body that is there at once needs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl hyper::body::Body for DeadlineBody {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(self.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The error a handler reading a [`DeadlineBody`] too slow sent gets.
#[derive(Debug)]
struct BodyTimeout(Duration);

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body not received within {} s",
            self.0.as_secs_f64()
        )
    }
}

impl StdError for BodyTimeout {}
