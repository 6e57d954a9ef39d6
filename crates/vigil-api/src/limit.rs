//! A cap on the connections of a TCP listener anyone may reach (the health port).
//!
//! tonic limits requests per connection but not connections: without this, clients that
//! connect and send nothing pile up until the agent runs out of file descriptors. At most
//! `max` connections are open; a new one closes the oldest (`shutdown(2)` on a duplicate
//! of its socket wakes whatever waits on it), so silent clients cannot keep a prober out,
//! and the server's `max_connection_age` ends any connection after a while anyway.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::{Stream, StreamExt, wrappers::TcpListenerStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

#[derive(Debug)]
pub struct ConnLimit {
    max: usize,
    /// Open connections, oldest first: (id, a duplicate of the socket to shut it down).
    open: Mutex<VecDeque<(u64, OwnedFd)>>,
    next: AtomicU64,
}

impl ConnLimit {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            open: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(0),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn admit(self: &Arc<Self>, inner: TcpStream) -> io::Result<Limited> {
        let dup = inner.as_fd().try_clone_to_owned()?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while open.len() >= self.max {
            if let Some((_, oldest)) = open.pop_front() {
                // SAFETY: shutdown(2) on a descriptor we own; the socket stays valid.
                unsafe { libc::shutdown(oldest.as_raw_fd(), libc::SHUT_RDWR) };
            }
        }
        open.push_back((id, dup));
        Ok(Limited {
            inner,
            id,
            limit: Arc::clone(self),
        })
    }

    fn done(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(i, _)| *i != id);
    }
}

/// The accepted connections of `listener`, under `limit`.
pub fn incoming(
    listener: TcpListener,
    limit: Arc<ConnLimit>,
) -> impl Stream<Item = io::Result<Limited>> {
    TcpListenerStream::new(listener).map(move |s| {
        let s = s?;
        let _ = s.set_nodelay(true);
        limit.admit(s)
    })
}

/// A connection counted by a [`ConnLimit`] until dropped.
#[derive(Debug)]
pub struct Limited {
    inner: TcpStream,
    id: u64,
    limit: Arc<ConnLimit>,
}

impl Drop for Limited {
    fn drop(&mut self) {
        self.limit.done(self.id);
    }
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_new_connection_beyond_the_cap_closes_the_oldest() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limit = ConnLimit::new(2);
        let mut accepted = Box::pin(incoming(listener, Arc::clone(&limit)));
        // The server side keeps every connection it accepted (as a silent client would
        // make it).
        let mut held = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            held.push(accepted.next().await.unwrap().unwrap());
        }
        assert_eq!(limit.open(), 2);
        // The oldest was shut down: its client sees the end at once.
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(std::time::Duration::from_secs(1), clients[0].read(&mut buf))
            .await
            .expect("closed at once")
            .unwrap_or(0);
        assert_eq!(n, 0);
        // The newest are untouched.
        let r = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            clients[2].read(&mut buf),
        )
        .await;
        assert!(r.is_err(), "still open: {r:?}");
        held.clear();
        assert_eq!(limit.open(), 0);
    }
}
