//! Kubernetes identity for events: a watch of this node's pods ([`watch`], thin, kube-rs),
//! the pods by container id ([`store`], pure) and what a Pod says about each container
//! ([`pod`], pure: names, labels, image, workload from owner references, exec probes), and
//! the cluster's TracingPolicy objects reconciled with the loaded policies ([`policies`], pure).

pub mod node;
pub mod pod;
pub mod policies;
pub mod scope;
pub mod store;
pub mod watch;

pub use node::NodeLabels;
pub use pod::ContainerIdentity;
pub use policies::{Desired, Key};
pub use scope::{CgroupSet, Scopes, SharedScopes};
pub use store::{PodStore, SharedPods};
pub use watch::{K8sError, PodScopes, PolicySink, WatchOptions, spawn, spawn_policies};
