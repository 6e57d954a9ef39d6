//! Sequence numbers (vigil extension, `GetEventsResponse.vigil_seq` / `vigil_instance`): each
//! stream numbers what it delivers, 1, 2, 3..., so a consumer can prove it missed nothing;
//! a stream that loses numbered events says so with an `events_lost` (stage
//! `LOSS_STAGE_STREAM`) whose count is the number of sequence numbers skipped before it.

use std::io::Read;
use std::sync::OnceLock;
use std::time::SystemTime;

use vigil_proto::tetragon::{EventsLost, GetEventsResponse, LossStage, get_events_response};

/// This agent instance's id: 32 hex digits drawn once per process, shared by every stream,
/// so a consumer tells a restart (numbering from 1 again) from a loss.
pub fn instance() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut b = [0u8; 16];
        let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
        if random.is_err() {
            // No /dev/urandom (a bare chroot): time and pid still differ between starts.
            let t = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            b[..8].copy_from_slice(&(t as u64).to_le_bytes());
            b[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        }
        vigil_hex::encode(&b)
    })
}

/// Appends the two fields to a serialised event (one JSON object, no newline) exactly as
/// pbjson would write them: they are the last fields of `GetEventsResponse`, so the line
/// stays Tetragon's byte for byte up to its closing brace. Cheaper than cloning the shared
/// event to set them. A line that is not an object is left alone.
pub fn stamp(line: &mut Vec<u8>, seq: u64, instance: &str) {
    if line.last() != Some(&b'}') {
        return;
    }
    line.pop();
    if line.last() != Some(&b'{') {
        line.push(b',');
    }
    // 64-bit integers are JSON strings in protojson.
    line.extend_from_slice(b"\"vigil_seq\":\"");
    line.extend_from_slice(seq.to_string().as_bytes());
    line.extend_from_slice(b"\",\"vigil_instance\":\"");
    line.extend_from_slice(instance.as_bytes());
    line.extend_from_slice(b"\"}");
}

/// A stream's own loss report (`events_lost` at `stage`, type `ANY`).
pub fn loss_report(stage: LossStage, count: u64, total: u64, node_name: &str) -> GetEventsResponse {
    GetEventsResponse {
        event: Some(get_events_response::Event::EventsLost(EventsLost {
            stage: stage as i32,
            event_type: "ANY".into(),
            count,
            total,
        })),
        node_name: node_name.to_string(),
        time: Some(SystemTime::now().into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_equals_pbjson_with_the_fields_set() {
        let mut ev = loss_report(LossStage::Sink, 3, 7, "node");
        let mut line = serde_json::to_vec(&ev).unwrap();
        stamp(&mut line, 42, "abc");
        ev.vigil_seq = 42;
        ev.vigil_instance = "abc".into();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            serde_json::to_string(&ev).unwrap()
        );
        let mut empty = b"{}".to_vec();
        stamp(&mut empty, 1, "i");
        assert_eq!(empty, br#"{"vigil_seq":"1","vigil_instance":"i"}"#);
        // Unnumbered events keep Tetragon's JSON: the fields are absent at zero.
        let plain = serde_json::to_string(&GetEventsResponse::default()).unwrap();
        assert_eq!(plain, "{}");
    }

    #[test]
    fn instance_is_stable_and_hex() {
        assert_eq!(instance(), instance());
        assert_eq!(instance().len(), 32);
        assert!(instance().bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
