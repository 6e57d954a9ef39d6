//! vigil's integration tests: one binary (ripgrep style). They run as root against the real
//! kernel and the real agent binary.

mod adversarial;
mod api;
mod api_debug;
mod api_policies;
mod args;
mod char_buf;
mod cli;
mod compat_debian;
mod containers;
mod export;
mod harness;
mod hooks;
mod k8s;
mod k8s_install;
mod k8s_policies;
mod k8s_scope;
mod keep_sensors;
mod kernel_caps;
mod kfuncs;
mod kfuncs_creds;
mod kfuncs_loader;
mod kfuncs_multi;
mod kfuncs_net;
mod kfuncs_socktrack;
mod kfuncs_uring;
mod lifecycle;
mod load;
mod namespaces;
mod netfallback;
mod policy;
mod policy_actions;
mod policy_engine;
mod process_selectors;
mod proto_check;
mod same_file;
