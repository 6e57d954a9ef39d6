//! vigil's API: the `tetragon.FineGuidanceSensors` gRPC service (wire-compatible with
//! Tetragon's), `grpc.health.v1`, the fan-out of bus events to `GetEvents` clients, event
//! and field filters, the policy-manager interface, client helpers for the CLI (connection,
//! compact rendering), and vigil's `vigil.history.v1.History` extension (`history`).

pub mod client;
pub mod compact;
pub mod fanout;
pub mod fields;
pub mod filters;
pub mod history;
pub mod limit;
pub mod liveness;
pub mod policy;
pub mod runtime_hook;
pub mod server;
pub mod service;
pub mod table;

pub use fanout::{
    DEFAULT_BUFFER_BYTES, DEFAULT_CLIENT_BUFFER, DEFAULT_CLIENT_BUFFER_BYTES, DEFAULT_MAX_CLIENTS,
    GrpcSink, Hub, Limits,
};
pub use policy::{MemoryPolicyManager, PolicyManager, PolicyOpError, PolicyStatus};
pub use server::{ApiServer, ServerConfig, ServerError, TlsFiles};
pub use service::{AgentControl, AgentInfo, Service};
