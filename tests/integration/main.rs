//! vigil's integration tests: one binary (ripgrep style). They run as root against the real
//! kernel and the real agent binary.

mod api;
mod cli;
mod containers;
mod export;
mod harness;
mod k8s;
mod kernel_caps;
mod lifecycle;
mod load;
mod policy;
mod proto_check;
