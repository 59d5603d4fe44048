//! The one keep-alive pool of the data plane (upstream targets and the hop to
//! Python): a LIFO of idle connections behind a mutex, bounded by `max_idle`;
//! a connection idle for `idle_timeout` is dropped when next seen, and one
//! that has anything to read (the peer closed it, or sent stray bytes) is
//! dropped when taken.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Conn, Io};

struct Idle<S> {
    conn: Conn<S>,
    since: Instant,
}

/// Idle connections to one peer.
pub struct Pool<S> {
    idle: Mutex<Vec<Idle<S>>>,
    max_idle: usize,
    /// `None`: kept until the peer closes them.
    idle_timeout: Option<Duration>,
}

impl<S: Io> Pool<S> {
    pub fn new(max_idle: usize, idle_timeout: Option<Duration>) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
        }
    }

    /// Idle connections right now.
    pub fn len(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    /// Whether no connection is idle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expired(&self, since: Instant, now: Instant) -> bool {
        self.idle_timeout
            .is_some_and(|limit| now.duration_since(since) >= limit)
    }

    /// The most recently used connection that is still clean, if any.
    pub async fn take(&self) -> Option<Conn<S>> {
        loop {
            let mut conn = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                loop {
                    let entry = idle.pop()?;
                    if !self.expired(entry.since, now) {
                        break entry.conn;
                    }
                }
            };
            // One read attempt: anything but "would block" means the peer
            // closed it or sent bytes nobody asked for.
            let usable =
                std::future::poll_fn(|cx| std::task::Poll::Ready(conn.poll_usable(cx))).await;
            if usable {
                return Some(conn);
            }
        }
    }

    /// Put a connection whose exchange completed cleanly back.
    pub fn put(&self, conn: Conn<S>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // Oldest first: drop those past their idle time.
        let expired = idle
            .iter()
            .take_while(|e| self.expired(e.since, now))
            .count();
        idle.drain(..expired);
        if idle.len() < self.max_idle {
            idle.push(Idle { conn, since: now });
        }
    }
}
