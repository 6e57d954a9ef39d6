//! vigil's integration tests: one binary (ripgrep style). They run as root against the real
//! kernel and the real agent binary.

mod api;
mod char_buf;
mod cli;
mod export;
mod harness;
mod hooks;
mod kernel_caps;
mod lifecycle;
mod load;
mod namespaces;
mod policy;
mod policy_engine;
mod proto_check;
