//! `vigil.history.v1.History`: the flight recorder's queries (`vigil history tree|events`)
//! over gRPC, a vigil extension served beside `tetragon.FineGuidanceSensors`.
//!
//! Queries read the slices with their own read-only connections on tokio's blocking pool,
//! never on the pipeline thread or the runtime's workers. A client chooses the filters, so
//! every response is bounded: [`MAX_EVENTS`] events and [`MAX_RESPONSE_BYTES`] at most, with
//! `truncated` set when more matched.

use std::path::PathBuf;
use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};
use vigil_history::{EventFilter, History, HistoryError, ProcessRow, StoredEvent, keys};
use vigil_proto::vigil::history::v1 as pb;
use vigil_proto::wkt::Timestamp;

pub use pb::history_server::HistoryServer;

/// Events per response at most (and the default limit).
pub const MAX_EVENTS: usize = 10_000;
/// Encoded bytes of events and processes per response at most: under the 4 MiB that gRPC
/// clients accept by default.
pub const MAX_RESPONSE_BYTES: usize = 3 << 20;

/// The service; `dir` is the agent's --history-dir (None: not recording).
#[derive(Debug, Clone)]
pub struct HistoryService {
    dir: Option<Arc<PathBuf>>,
}

impl HistoryService {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir: dir.map(Arc::new),
        }
    }

    fn dir(&self) -> Result<Arc<PathBuf>, Status> {
        self.dir.clone().ok_or_else(|| {
            Status::failed_precondition(
                "this agent records no history: start it with --history-dir to query it",
            )
        })
    }
}

fn status(e: &HistoryError) -> Status {
    match e {
        HistoryError::Empty(_) | HistoryError::UnknownExecId(_) | HistoryError::UnknownPid(_) => {
            Status::not_found(e.to_string())
        }
        _ => Status::internal(e.to_string()),
    }
}

fn ns_of(field: &str, t: Option<Timestamp>) -> Result<Option<i64>, Status> {
    t.map(|t| {
        t.seconds
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(i64::from(t.nanos)))
            .filter(|_| (0..1_000_000_000).contains(&t.nanos))
            .ok_or_else(|| Status::invalid_argument(format!("{field}: timestamp out of range")))
    })
    .transpose()
}

fn timestamp(ns: i64) -> Timestamp {
    Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// The same filter `vigil history events` builds from its flags.
fn filter_of(r: pb::EventsRequest) -> Result<EventFilter, Status> {
    let pod = match r.pod.as_str() {
        "" => None,
        p => match p.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Some((ns.to_string(), name.to_string()))
            }
            _ => {
                return Err(Status::invalid_argument(format!(
                    "pod {p:?}: expected namespace/name"
                )));
            }
        },
    };
    let f = EventFilter {
        since_ns: ns_of("since", r.since)?,
        until_ns: ns_of("until", r.until)?,
        binary: non_empty(r.binary),
        pod,
        policy: non_empty(r.policy),
        action: non_empty(r.action).map(|a| keys::normalise_action(&a)),
        event_type: non_empty(r.event_type).map(|t| keys::normalise_type(&t)),
        exec_ids: None,
    };
    if let (Some(s), Some(u)) = (f.since_ns, f.until_ns)
        && s > u
    {
        return Err(Status::invalid_argument(
            "since is after until: nothing can match",
        ));
    }
    Ok(f)
}

fn limit_of(limit: u32) -> usize {
    match usize::try_from(limit) {
        Ok(0) | Err(_) => MAX_EVENTS,
        Ok(n) => n.min(MAX_EVENTS),
    }
}

/// A response filling up to its bounds.
struct Bounded {
    limit: usize,
    bytes: usize,
    truncated: bool,
    events: Vec<pb::RecordedEvent>,
}

impl Bounded {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            bytes: 0,
            truncated: false,
            events: Vec::new(),
        }
    }

    /// Room for `bytes` more; false (and truncated) when there is none.
    fn charge(&mut self, bytes: usize) -> bool {
        if self.bytes + bytes > MAX_RESPONSE_BYTES {
            self.truncated = true;
            return false;
        }
        self.bytes += bytes;
        true
    }

    /// Adds `e`; false when the response is full (then `e` is left out, and truncated set).
    fn push(&mut self, e: StoredEvent) -> bool {
        if self.events.len() >= self.limit {
            self.truncated = true;
            return false;
        }
        let rec = pb::RecordedEvent {
            json: e.line,
            event: Some(e.event),
        };
        if !self.charge(rec.encoded_len() + 8) {
            return false;
        }
        self.events.push(rec);
        true
    }
}

fn process(p: ProcessRow) -> pb::Process {
    let (pod_namespace, pod_name) = p.pod.unwrap_or_default();
    pb::Process {
        exec_id: p.exec_id,
        parent_exec_id: p.parent_exec_id,
        pid: p.pid,
        binary: p.binary,
        arguments: p.arguments,
        pod_namespace,
        pod_name,
        start_time: p.start_ns.map(timestamp),
        exit_time: p.exit_ns.map(timestamp),
    }
}

fn open(dir: &std::path::Path) -> Result<History, Status> {
    let h = History::open(dir).map_err(|e| status(&e))?;
    for s in &h.skipped {
        tracing::warn!(slice = %s, "history query skipped a slice");
    }
    Ok(h)
}

fn events(dir: &std::path::Path, r: pb::EventsRequest) -> Result<pb::EventsResponse, Status> {
    let limit = limit_of(r.limit);
    let filter = filter_of(r)?;
    let h = open(dir)?;
    let mut out = Bounded::new(limit);
    h.each_event(&filter, |e| out.push(e))
        .map_err(|e| status(&e))?;
    Ok(pb::EventsResponse {
        events: out.events,
        truncated: out.truncated,
    })
}

fn tree(dir: &std::path::Path, r: &pb::TreeRequest) -> Result<pb::TreeResponse, Status> {
    let h = open(dir)?;
    let exec_id = match (r.exec_id.as_str(), r.pid) {
        ("", None) => return Err(Status::invalid_argument("give exec_id or pid")),
        ("", Some(pid)) => {
            h.newest_with_pid(pid)
                .map_err(|e| status(&e))?
                .ok_or_else(|| status(&HistoryError::UnknownPid(pid)))?
                .exec_id
        }
        (id, _) => id.to_string(),
    };
    let tree = h.tree(&exec_id).map_err(|e| status(&e))?;
    let mut out = Bounded::new(limit_of(r.limit));
    let mut processes = Vec::new();
    for p in tree.processes.into_values() {
        let p = process(p);
        if !out.charge(p.encoded_len() + 8) {
            break;
        }
        processes.push(p);
    }
    for e in tree.events {
        if !out.push(e) {
            break;
        }
    }
    Ok(pb::TreeResponse {
        root_exec_id: tree.root,
        processes,
        events: out.events,
        truncated: out.truncated,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<Response<T>, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("history query failed: {e}")))?
        .map(Response::new)
}

#[tonic::async_trait]
impl pb::history_server::History for HistoryService {
    async fn tree(
        &self,
        request: Request<pb::TreeRequest>,
    ) -> Result<Response<pb::TreeResponse>, Status> {
        let dir = self.dir()?;
        let r = request.into_inner();
        blocking(move || tree(&dir, &r)).await
    }

    async fn events(
        &self,
        request: Request<pb::EventsRequest>,
    ) -> Result<Response<pb::EventsResponse>, Status> {
        let dir = self.dir()?;
        let r = request.into_inner();
        blocking(move || events(&dir, r)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_capped() {
        assert_eq!(limit_of(0), MAX_EVENTS);
        assert_eq!(limit_of(5), 5);
        assert_eq!(limit_of(u32::MAX), MAX_EVENTS);
    }

    #[test]
    fn bad_filters_are_invalid_arguments_naming_the_field() {
        let e = filter_of(pb::EventsRequest {
            pod: "web".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("namespace/name"), "{e}");
        let e = filter_of(pb::EventsRequest {
            since: Some(timestamp(2_000_000_000)),
            until: Some(timestamp(1_000_000_000)),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.message().contains("since is after until"), "{e}");
        let e = filter_of(pb::EventsRequest {
            since: Some(Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            }),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.message().contains("since"), "{e}");
    }

    #[test]
    fn filters_are_normalised_as_the_cli_does() {
        let f = filter_of(pb::EventsRequest {
            since: Some(timestamp(1_500_000_000)),
            pod: "ns/web".into(),
            action: "sigkill".into(),
            event_type: "exec".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.since_ns, Some(1_500_000_000));
        assert_eq!(f.pod, Some(("ns".into(), "web".into())));
        assert_eq!(f.action.as_deref(), Some("KPROBE_ACTION_SIGKILL"));
        assert_eq!(f.event_type.as_deref(), Some("PROCESS_EXEC"));
        assert_eq!(f.binary, None);
    }

    #[tokio::test]
    async fn without_a_history_dir_calls_fail_with_a_clear_status() {
        use pb::history_server::History as _;
        let s = HistoryService::new(None);
        let e = s
            .events(Request::new(pb::EventsRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.message().contains("--history-dir"), "{e}");
    }
}
