//! From the event bus to gRPC clients.
//!
//! [`GrpcSink`] sits on the bus (agent main thread). Each `GetEvents` client has a
//! [`FilterList`] (evaluated here, so a client's queue holds only its events) and a queue
//! bounded in events (`--grpc-client-buffer`) and in bytes (the encoded size of what it holds,
//! `--grpc-client-buffer-bytes`); all queues together are bounded too (`--grpc-buffer-bytes`),
//! and so is the number of streams (`--grpc-max-clients`). Publishing never blocks: a client
//! over a bound is cut from the fan-out at once (its backlog freed), counted, logged once, and
//! its stream ends with `RESOURCE_EXHAUSTED` naming the bound. The agent and other clients are
//! not affected.
//!
//! Sequence numbers: each client's events are numbered 1, 2, 3... after its filters, as they
//! enter its queue (`vigil_seq`, with the agent's `vigil_instance`). A cut client's last
//! message before the status is an `events_lost` (stage `LOSS_STAGE_STREAM`) counting the
//! numbers it will never see, itself numbered, so its seq has no unexplained hole.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use prost::Message;
use tonic::Status;
use vigil_export::{Event, Sink, seq};
use vigil_proto::tetragon::{GetEventsResponse, LossStage};

use crate::fields::FieldFilters;
use crate::filters::FilterList;

/// Default events queued per client before a slow client is disconnected.
pub const DEFAULT_CLIENT_BUFFER: usize = 10_000;
/// Default bytes (encoded events) queued per client before it is disconnected.
pub const DEFAULT_CLIENT_BUFFER_BYTES: usize = 8 << 20;
/// Default bytes queued for all clients together.
pub const DEFAULT_BUFFER_BYTES: usize = 64 << 20;
/// Default number of concurrent `GetEvents` streams.
pub const DEFAULT_MAX_CLIENTS: usize = 64;

/// The bounds of the fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Events queued per client.
    pub client_events: usize,
    /// Encoded bytes queued per client.
    pub client_bytes: usize,
    /// Encoded bytes queued for all clients.
    pub total_bytes: usize,
    /// Concurrent `GetEvents` streams.
    pub max_clients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            client_events: DEFAULT_CLIENT_BUFFER,
            client_bytes: DEFAULT_CLIENT_BUFFER_BYTES,
            total_bytes: DEFAULT_BUFFER_BYTES,
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    /// Cut by the hub: `at` is the last sequence number given (to an event not delivered).
    Cut {
        reason: String,
        at: u64,
    },
    /// The client went away.
    Closed,
}

/// One client's queue, shared by the hub (pushes) and the stream (pops).
struct Queue {
    /// (seq, encoded length, event)
    items: VecDeque<(u64, usize, Event)>,
    bytes: usize,
    /// Last sequence number given.
    seq: u64,
    state: State,
    waker: Option<Waker>,
    /// For the loss report: the node of the events this client was sent.
    node_name: Option<String>,
}

type Shared = Arc<Mutex<Queue>>;

fn lock(q: &Shared) -> MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(|e| e.into_inner())
}

struct Subscriber {
    id: u64,
    filters: FilterList,
    q: Shared,
}

/// Shared between the sink (agent thread) and the server (tokio threads).
pub struct Hub {
    subscribers: Mutex<Vec<Subscriber>>,
    limits: Limits,
    next_id: AtomicU64,
    slow_disconnects: AtomicU64,
    /// Encoded bytes in all queues.
    queued: AtomicUsize,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("clients", &self.clients())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Hub {
    /// A hub with the default bounds and `client_buffer` events per client.
    pub fn new(client_buffer: usize) -> Arc<Self> {
        Self::with_limits(Limits {
            client_events: client_buffer,
            ..Limits::default()
        })
    }

    pub fn with_limits(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            subscribers: Mutex::new(Vec::new()),
            limits: Limits {
                client_events: limits.client_events.max(1),
                client_bytes: limits.client_bytes.max(1),
                total_bytes: limits.total_bytes.max(1),
                max_clients: limits.max_clients.max(1),
            },
            next_id: AtomicU64::new(1),
            slow_disconnects: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn client_buffer(&self) -> usize {
        self.limits.client_events
    }

    fn subs(&self) -> MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Clients currently receiving events.
    pub fn clients(&self) -> usize {
        self.subs()
            .iter()
            .filter(|s| lock(&s.q).state == State::Open)
            .count()
    }

    /// Clients disconnected so far because they read too slowly (any bound).
    pub fn slow_disconnects(&self) -> u64 {
        self.slow_disconnects.load(Ordering::Relaxed)
    }

    /// Encoded bytes queued for all clients now.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Registers a client; events flow from the next publish on. Refused when
    /// `max_clients` streams are open.
    pub fn subscribe(
        self: &Arc<Self>,
        filters: FilterList,
        fields: FieldFilters,
    ) -> Result<EventStream, Status> {
        let mut subs = self.subs();
        subs.retain(|s| lock(&s.q).state == State::Open);
        if subs.len() >= self.limits.max_clients {
            tracing::warn!(
                clients = subs.len(),
                max = self.limits.max_clients,
                "GetEvents stream refused: too many streams"
            );
            return Err(Status::resource_exhausted(format!(
                "vigil: too many GetEvents streams: {} open, the limit is {} \
                 (--grpc-max-clients)",
                subs.len(),
                self.limits.max_clients
            )));
        }
        let q = Arc::new(Mutex::new(Queue {
            items: VecDeque::new(),
            bytes: 0,
            seq: 0,
            state: State::Open,
            waker: None,
            node_name: None,
        }));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        subs.push(Subscriber {
            id,
            filters,
            q: Arc::clone(&q),
        });
        tracing::debug!(client = id, "gRPC events client connected");
        Ok(EventStream {
            q,
            fields,
            hub: Arc::clone(self),
            delivered: 0,
            status: None,
            done: false,
        })
    }

    /// Why `q` cannot take `len` more bytes, if it cannot.
    fn over(&self, q: &Queue, len: usize, clients: usize) -> Option<String> {
        let l = &self.limits;
        if q.items.len() >= l.client_events {
            return Some(format!(
                "its queue of {} events filled (--grpc-client-buffer)",
                l.client_events
            ));
        }
        if q.bytes + len > l.client_bytes {
            return Some(format!(
                "its queue reached {} bytes (--grpc-client-buffer-bytes)",
                l.client_bytes
            ));
        }
        // Over the shared budget, the clients holding more than an equal share go first:
        // the total stays within about the budget and fast clients keep their events.
        if self.queued.load(Ordering::Relaxed) + len > l.total_bytes
            && q.bytes + len > l.total_bytes / clients.max(1)
        {
            return Some(format!(
                "the queues of all clients reached {} bytes (--grpc-buffer-bytes) and its \
                 share was among the largest",
                l.total_bytes
            ));
        }
        None
    }

    fn publish(&self, ev: &Event) {
        let mut subs = self.subs();
        if subs.is_empty() {
            return;
        }
        let clients = subs.len();
        // Computed once per event, only when a client wants it.
        let mut encoded = None;
        subs.retain_mut(|s| {
            let mut q = lock(&s.q);
            if q.state != State::Open {
                if q.state == State::Closed {
                    tracing::debug!(client = s.id, "gRPC events client disconnected");
                }
                return false;
            }
            if !s.filters.passes(ev) {
                return true;
            }
            let len = *encoded.get_or_insert_with(|| ev.encoded_len());
            q.seq += 1;
            if q.node_name.is_none() {
                q.node_name = Some(ev.node_name.clone());
            }
            if let Some(reason) = self.over(&q, len, clients) {
                // Free the backlog now: a client that does not read must not hold memory
                // until its connection ends.
                let freed = std::mem::take(&mut q.bytes);
                let dropped = q.items.len() + 1;
                q.items.clear();
                self.queued.fetch_sub(freed, Ordering::Relaxed);
                let at = q.seq;
                let total = self.slow_disconnects.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    client = s.id,
                    dropped,
                    slow_clients_total = total,
                    "gRPC events client too slow: {reason}; disconnected"
                );
                q.state = State::Cut { reason, at };
                if let Some(w) = q.waker.take() {
                    w.wake();
                }
                return false;
            }
            let seq = q.seq;
            q.items.push_back((seq, len, Arc::clone(ev)));
            q.bytes += len;
            self.queued.fetch_add(len, Ordering::Relaxed);
            if let Some(w) = q.waker.take() {
                w.wake();
            }
            true
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
    q: Shared,
    fields: FieldFilters,
    hub: Arc<Hub>,
    /// The last sequence number delivered.
    delivered: u64,
    /// The status that ends a cut stream, after its loss report.
    status: Option<Status>,
    done: bool,
}

impl EventStream {
    fn numbered(&self, mut ev: GetEventsResponse, seq: u64) -> GetEventsResponse {
        ev.vigil_seq = seq;
        ev.vigil_instance = seq::instance().to_string();
        ev
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let mut q = lock(&self.q);
        let freed = std::mem::take(&mut q.bytes);
        q.items.clear();
        self.hub.queued.fetch_sub(freed, Ordering::Relaxed);
        if q.state == State::Open {
            q.state = State::Closed;
        }
    }
}

impl Stream for EventStream {
    type Item = Result<GetEventsResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(status) = self.status.take() {
            self.done = true;
            return Poll::Ready(Some(Err(status)));
        }
        let shared = Arc::clone(&self.q);
        let mut q = lock(&shared);
        if let Some((seq, len, ev)) = q.items.pop_front() {
            q.bytes -= len;
            drop(q);
            self.hub.queued.fetch_sub(len, Ordering::Relaxed);
            self.delivered = seq;
            let out = if self.fields.is_empty() {
                Ok(GetEventsResponse::clone(&ev))
            } else {
                self.fields
                    .apply(&ev)
                    .map_err(|e| Status::internal(format!("field filter: {e}")))
            };
            return Poll::Ready(Some(out.map(|ev| self.numbered(ev, seq))));
        }
        match q.state.clone() {
            State::Open => {
                q.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            State::Cut { reason, at } => {
                let node = q.node_name.clone().unwrap_or_default();
                drop(q);
                // What the client will never see: numbered, then dropped with the backlog.
                let skipped = at - self.delivered;
                let report = seq::loss_report(LossStage::Stream, skipped, skipped, &node);
                self.status = Some(Status::resource_exhausted(format!(
                    "vigil: client too slow: {reason}, so it was disconnected (slow clients \
                     so far: {}); read faster or filter more",
                    self.hub.slow_disconnects()
                )));
                Poll::Ready(Some(Ok(self.numbered(report, at + 1))))
            }
            State::Closed => {
                drop(q);
                self.done = true;
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
#[path = "fanout_tests.rs"]
mod tests;
