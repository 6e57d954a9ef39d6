//! From the event bus to gRPC clients.
//!
//! [`GrpcSink`] sits on the bus (agent main thread). Each `GetEvents` client has a
//! [`FilterList`] (evaluated here, so a client's queue holds only its events) and a bounded
//! queue of `client_buffer` events. Publishing never blocks: when a client's queue is full
//! the client is dropped from the fan-out, counted, and its stream ends with
//! `RESOURCE_EXHAUSTED` naming the reason. The agent and other clients are not affected.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc::{self, error::TrySendError};
use tonic::Status;
use vigil_export::{Event, Sink};
use vigil_proto::tetragon::GetEventsResponse;

use crate::fields::FieldFilters;
use crate::filters::FilterList;

/// Default events queued per client before a slow client is disconnected.
pub const DEFAULT_CLIENT_BUFFER: usize = 10_000;

struct Subscriber {
    id: u64,
    filters: FilterList,
    tx: mpsc::Sender<Event>,
    overflow: Arc<AtomicBool>,
}

/// Shared between the sink (agent thread) and the server (tokio threads).
pub struct Hub {
    subscribers: Mutex<Vec<Subscriber>>,
    client_buffer: usize,
    next_id: AtomicU64,
    slow_disconnects: AtomicU64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("clients", &self.clients())
            .field("client_buffer", &self.client_buffer)
            .finish()
    }
}

impl Hub {
    pub fn new(client_buffer: usize) -> Arc<Self> {
        Arc::new(Self {
            subscribers: Mutex::new(Vec::new()),
            client_buffer: client_buffer.max(1),
            next_id: AtomicU64::new(1),
            slow_disconnects: AtomicU64::new(0),
        })
    }

    pub fn client_buffer(&self) -> usize {
        self.client_buffer
    }

    /// Clients currently receiving events.
    pub fn clients(&self) -> usize {
        self.subscribers.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Clients disconnected so far because they read too slowly.
    pub fn slow_disconnects(&self) -> u64 {
        self.slow_disconnects.load(Ordering::Relaxed)
    }

    /// Registers a client; events flow from the next publish on.
    pub fn subscribe(self: &Arc<Self>, filters: FilterList, fields: FieldFilters) -> EventStream {
        let (tx, rx) = mpsc::channel(self.client_buffer);
        let overflow = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Subscriber {
                id,
                filters,
                tx,
                overflow: overflow.clone(),
            });
        tracing::debug!(client = id, "gRPC events client connected");
        EventStream {
            rx,
            overflow,
            fields,
            hub: Arc::clone(self),
            done: false,
        }
    }

    fn publish(&self, ev: &Event) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if subs.is_empty() {
            return;
        }
        subs.retain_mut(|s| {
            if !s.filters.passes(ev) {
                return !s.tx.is_closed();
            }
            match s.tx.try_send(Arc::clone(ev)) {
                Ok(()) => true,
                Err(TrySendError::Closed(_)) => {
                    tracing::debug!(client = s.id, "gRPC events client disconnected");
                    false
                }
                Err(TrySendError::Full(_)) => {
                    s.overflow.store(true, Ordering::Release);
                    let total = self.slow_disconnects.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(
                        client = s.id,
                        buffer = self.client_buffer,
                        slow_clients_total = total,
                        "gRPC events client too slow: queue full, disconnected"
                    );
                    false
                }
            }
        });
    }
}

/// The bus side of the fan-out.
#[derive(Debug)]
pub struct GrpcSink {
    hub: Arc<Hub>,
}

impl GrpcSink {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

impl Sink for GrpcSink {
    fn name(&self) -> &str {
        "grpc"
    }

    fn publish(&mut self, event: &Event) {
        self.hub.publish(event);
    }
}

/// One client's stream of events.
pub struct EventStream {
    rx: mpsc::Receiver<Event>,
    overflow: Arc<AtomicBool>,
    fields: FieldFilters,
    hub: Arc<Hub>,
    done: bool,
}

impl EventStream {
    fn too_slow(&mut self) -> Poll<Option<Result<GetEventsResponse, Status>>> {
        self.done = true;
        Poll::Ready(Some(Err(Status::resource_exhausted(format!(
            "vigil: client too slow: its queue of {} events filled, so it was disconnected \
             (slow clients so far: {}); read faster or filter more",
            self.hub.client_buffer,
            self.hub.slow_disconnects()
        )))))
    }
}

impl Stream for EventStream {
    type Item = Result<GetEventsResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        // Disconnect at once: the backlog of a client that fell behind is not delivered.
        if self.overflow.load(Ordering::Acquire) {
            return self.too_slow();
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(ev)) => {
                let out = if self.fields.is_empty() {
                    Ok(GetEventsResponse::clone(&ev))
                } else {
                    self.fields
                        .apply(&ev)
                        .map_err(|e| Status::internal(format!("field filter: {e}")))
                };
                Poll::Ready(Some(out))
            }
            Poll::Ready(None) if self.overflow.load(Ordering::Acquire) => self.too_slow(),
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn ev(n: &str) -> Event {
        Arc::new(GetEventsResponse {
            node_name: n.into(),
            ..Default::default()
        })
    }

    fn next(s: &mut EventStream) -> Poll<Option<Result<GetEventsResponse, Status>>> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(s).poll_next(&mut cx)
    }

    #[test]
    fn slow_client_is_dropped_others_continue() {
        let hub = Hub::new(2);
        let mut sink = GrpcSink::new(hub.clone());
        let mut slow = hub.subscribe(FilterList::default(), FieldFilters::default());
        let mut fast = hub.subscribe(FilterList::default(), FieldFilters::default());
        for i in 0..5 {
            sink.publish(&ev(&i.to_string()));
            if let Poll::Ready(Some(Ok(e))) = next(&mut fast) {
                assert_eq!(e.node_name, i.to_string());
            } else {
                panic!("fast client got nothing");
            }
        }
        assert_eq!(hub.slow_disconnects(), 1);
        assert_eq!(hub.clients(), 1);
        match next(&mut slow) {
            Poll::Ready(Some(Err(s))) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted);
                assert!(s.message().contains("too slow"), "{}", s.message());
            }
            _ => panic!("slow client not told"),
        }
        assert!(matches!(next(&mut slow), Poll::Ready(None)));
    }

    #[test]
    fn closed_clients_leave() {
        let hub = Hub::new(4);
        let mut sink = GrpcSink::new(hub.clone());
        drop(hub.subscribe(FilterList::default(), FieldFilters::default()));
        sink.publish(&ev("x"));
        assert_eq!(hub.clients(), 0);
        assert_eq!(hub.slow_disconnects(), 0);
    }
}
