//! Hooks for the crate's own benchmarks (`benches/`, `benches/compare`, `wshub-bench`'s
//! tests). Not part of the public API: hidden from the documentation and free to
//! change in any release.

use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::auth::Identity;
use crate::hub::{Hub, HubConfig, RoomError};
use crate::ws::{Outbound, Role, WebSocket};

/// Raises every limit that one load generator on loopback meets and a real crowd
/// would not: the connection caps (all of 127.0.0.x is one /24 network of a few
/// hosts) to `connections`, the handshakes in flight per host and network, and the
/// message, user, host and membership rates (a generator publishes and joins as fast
/// as it can). Everything else keeps its default.
pub fn lift_limits_for_load(c: &mut HubConfig, connections: usize) {
    c.max_connections = connections;
    c.max_connections_per_network = connections;
    c.max_connections_per_ip = connections;
    c.max_pending_connections = 4_096;
    c.max_pending_per_host = 4_096;
    c.max_pending_per_network = 4_096;
    c.rate_per_second = f64::INFINITY;
    c.rate_burst = f64::INFINITY;
    c.user_rate_per_second = f64::INFINITY;
    c.host_rate_per_second = f64::INFINITY;
    c.membership_rate_per_second = f64::INFINITY;
}

/// Bytes written by every subscriber's stream, and a way to wait for a total.
#[derive(Default)]
struct Progress {
    written: AtomicU64,
    target: AtomicU64,
    reached: Notify,
}

/// A stream that never yields input and swallows (and counts) whatever is written.
struct NullStream(Arc<Progress>);

impl NullStream {
    fn count(&self, n: usize) {
        let total = self.0.written.fetch_add(n as u64, Ordering::AcqRel) + n as u64;
        if total >= self.0.target.load(Ordering::Acquire) {
            self.0.reached.notify_waiters();
        }
    }
}

impl AsyncRead for NullStream {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // The connection's task is woken by its outbound queue, never by input.
        Poll::Pending
    }
}

impl AsyncWrite for NullStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.count(buf.len());
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = bufs.iter().map(|b| b.len()).sum();
        self.count(n);
        Poll::Ready(Ok(n))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Subscribers attached by [`attach_memory_subscribers`]; detached when dropped.
pub struct MemorySubscribers {
    hub: Hub,
    conns: Vec<(u64, Outbound)>,
    tasks: Vec<JoinHandle<()>>,
    progress: Arc<Progress>,
}

impl fmt::Debug for MemorySubscribers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySubscribers")
            .field("len", &self.conns.len())
            .field("written", &self.bytes_written())
            .finish_non_exhaustive()
    }
}

impl MemorySubscribers {
    /// How many subscribers.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Bytes written by all subscribers' connections so far.
    pub fn bytes_written(&self) -> u64 {
        self.progress.written.load(Ordering::Acquire)
    }

    /// Bytes still waiting in all subscribers' outbound queues.
    pub fn queued_bytes(&self) -> usize {
        self.conns.iter().map(|(_, o)| o.queued_bytes()).sum()
    }

    /// Waits until the subscribers' connections have written `total` bytes in all.
    pub async fn wait_for_bytes(&self, total: u64) {
        self.progress.target.store(total, Ordering::Release);
        loop {
            let reached = self.progress.reached.notified();
            tokio::pin!(reached);
            reached.as_mut().enable();
            if self.bytes_written() >= total {
                return;
            }
            reached.await;
        }
    }
}

impl Drop for MemorySubscribers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for (id, _) in &self.conns {
            self.hub.disconnect(*id);
        }
    }
}

/// Registers `n` connections on `hub` as members of `room`, each a real connection (its
/// own [`WebSocket`], outbound queue and task, spawned on the current tokio runtime)
/// over an in-memory stream that discards what is written, so fan-out can be measured
/// without sockets or file descriptors. They skip the join op: no presence, no room
/// limit, no join replies.
pub fn attach_memory_subscribers(
    hub: &Hub,
    room: &str,
    n: usize,
) -> Result<MemorySubscribers, RoomError> {
    let ns = hub
        .namespace_of(room)
        .ok_or_else(|| RoomError::NotFound(room.to_owned()))?;
    let state = hub.room_state(room, ns);
    let progress = Arc::new(Progress::default());
    let mut conns = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut ws = WebSocket::from_parts(
            NullStream(progress.clone()),
            Role::Server,
            hub.ws_config(),
            None,
            BytesMut::new(),
        );
        // Counted like a served connection's: bytes written go to the hub's metrics.
        #[cfg(feature = "metrics")]
        if let Some(metrics) = hub.metrics() {
            ws.set_observer(metrics.clone());
        }
        let identity = Arc::new(Identity::new(format!("mem-{i}"), "bench"));
        let entry = hub.register(identity, ws.outbound(), None);
        state
            .members_mut()
            .conns
            .insert(entry.id, entry.outbound.clone());
        entry.rooms().insert(state.name.clone(), state.clone());
        conns.push((entry.id, entry.outbound.clone()));
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(_)) = ws.recv().await {}
        }));
    }
    Ok(MemorySubscribers {
        hub: hub.clone(),
        conns,
        tasks,
        progress,
    })
}
