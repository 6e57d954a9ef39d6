#![no_main]
//! Feeds arbitrary text to the exact entry point the agent uses, then (for policies that
//! parse) to the serialiser, the compiler and a re-parse of the serialised form.

use libfuzzer_sys::fuzz_target;
use vigil_policy::compile::{Capabilities, compile};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = vigil_policy::parse_policy(text, "fuzz.yaml") {
        let _ = compile(&policy, &Capabilities::TRACEPOINTS_ONLY);
        let again =
            vigil_policy::parse_policy(&vigil_policy::serialize::to_yaml(&policy), "again.yaml")
                .expect("a serialised policy parses");
        assert!(policy.same_meaning(&again));
    }
});
