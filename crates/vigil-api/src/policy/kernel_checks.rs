//! The kernel checks of `vigil tracingpolicy validate` (functions, syscalls, tracepoints and
//! their parameters against this kernel's BTF and tracefs), run on every policy before it
//! loads, whichever way it came (gRPC, `--tracing-policy`, the Kubernetes watch): one
//! validation path. The kernel description holds the parsed BTF, so it is built when a
//! policy arrives and dropped once policies stop arriving ([`KernelChecks::release_idle`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigil_policy::{KernelInfo, TracingPolicy};

/// Builds the description of the kernel policies are checked against.
pub type KernelSource = Box<dyn Fn() -> Box<dyn KernelInfo + Send + Sync> + Send + Sync>;

/// A description unused this long is dropped (it is tens of MB: BTF and kallsyms); policies
/// arriving together (start-up, a Kubernetes resync, churn) share one.
const KEPT_IDLE: Duration = Duration::from_secs(2);

pub struct KernelChecks {
    source: KernelSource,
    cached: Mutex<Option<(Instant, Arc<dyn KernelInfo + Send + Sync>)>>,
}

impl KernelChecks {
    pub fn new(source: KernelSource) -> Self {
        Self {
            source,
            cached: Mutex::new(None),
        }
    }

    /// Every fault of `policy` against this kernel, located (`file:line:col: path: reason`).
    pub fn faults(&self, policy: &TracingPolicy) -> Vec<String> {
        let kernel = {
            let mut c = self.cached.lock().unwrap_or_else(|e| e.into_inner());
            let k = match c.take() {
                Some((_, k)) => k,
                None => Arc::from((self.source)()),
            };
            *c = Some((Instant::now(), Arc::clone(&k)));
            k
        };
        vigil_policy::kernel::check_policy(policy, kernel.as_ref())
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    /// Drops the kernel description when no policy needed it for a while; returns whether
    /// it did (the caller may then return the freed memory to the system).
    pub fn release_idle(&self) -> bool {
        let mut c = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if c.as_ref().is_some_and(|(at, _)| at.elapsed() >= KEPT_IDLE) {
            *c = None;
            return true;
        }
        false
    }
}
