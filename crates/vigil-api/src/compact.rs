//! `getevents -o compact`: one line per event, as tetra prints it (tetragon.md §5.3):
//! `<emoji> <kind padded to 7> <source> <binary> <details>`, source = `namespace/pod` or
//! the node name, an optional RFC 3339 timestamp prefix, colors as tetra's (fatih/color).

use vigil_proto::tetragon::get_events_response::Event;
use vigil_proto::tetragon::{GetEventsResponse, Process, ThrottleType};

#[derive(Debug, Clone, Copy)]
pub struct Colors(bool);

const RED: &str = "31";
const GREEN: &str = "32";
const YELLOW: &str = "33";
const BLUE: &str = "34";
const MAGENTA: &str = "35";
const CYAN: &str = "36";

impl Colors {
    pub fn new(enabled: bool) -> Self {
        Self(enabled)
    }

    /// Every field goes through here (or [`escape`]): its control characters are escaped
    /// before our own color codes are added.
    fn paint(self, code: &str, s: &str) -> String {
        let s = escape(s);
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.into_owned()
        }
    }
}

/// Characters that would act on the operator's terminal instead of being shown: C0
/// controls, DEL, C1 controls (U+0080..U+009F, e.g. CSI U+009B) and the Unicode bidi
/// embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069) that reorder what
/// is displayed.
fn hostile(c: char) -> bool {
    matches!(c, '\0'..='\x1f' | '\x7f'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A field as compact output prints it: binary names, arguments, paths and pod names come
/// from the monitored processes (anyone), so a control sequence in them must not reach the
/// terminal: `\x1b`, `\r`, `\u{202e}`...
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write;
    if !s.chars().any(hostile) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c <= '\x7f' && hostile(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if hostile(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Column at which capabilities are right-aligned.
const CAPS_PAD: usize = 120;

/// tetra's `CapTrailorPrinter`: lengths are in bytes (escape codes and emoji included),
/// the `%*s` width in characters, exactly as Go computes them.
fn cap_trailer(s: String, caps: &str) -> String {
    if caps.is_empty() {
        return s;
    }
    let padding = CAPS_PAD.saturating_sub(s.len());
    let fill = padding.saturating_sub(caps.chars().count());
    format!("{s} {}{caps}", " ".repeat(fill))
}

/// tetra's `processCaps`. Its loop ranges over the *indices* of the effective set and
/// prints CAP_SYS_ADMIN when index 21 exists, i.e. when more than 21 capabilities are
/// effective; reproduced as is so that lines compare equal.
fn process_caps(p: &Process) -> &'static str {
    match &p.cap {
        Some(c) if c.effective.len() > 21 => "🛑 CAP_SYS_ADMIN",
        _ => "",
    }
}

fn kind(c: Colors, color: &str, emoji: &str, name: &str) -> String {
    c.paint(color, &format!("{emoji} {name:<7}"))
}

fn process_info(c: Colors, node: &str, p: &Process) -> (String, String) {
    let source = match &p.pod {
        Some(pod) => c.paint(GREEN, &format!("{}/{}", pod.namespace, pod.name)),
        None => c.paint(GREEN, node),
    };
    let caps = c.paint(MAGENTA, process_caps(p));
    (format!("{source} {}", c.paint(MAGENTA, &p.binary)), caps)
}

/// One event as a compact line (no newline); `None` for events tetra does not print.
pub fn render(ev: &GetEventsResponse, c: Colors, timestamps: bool) -> Option<String> {
    let line = event_line(ev, c)?;
    if !timestamps {
        return Some(line);
    }
    let ts = ev
        .time
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string())
        .unwrap_or_else(|| "0001-01-01T00:00:00.000000000Z".into());
    Some(format!("{ts} {line}"))
}

fn event_line(ev: &GetEventsResponse, c: Colors) -> Option<String> {
    let node = ev.node_name.as_str();
    Some(match ev.event.as_ref()? {
        Event::ProcessExec(e) => {
            let p = e.process.as_ref()?;
            let (info, caps) = process_info(c, node, p);
            let args = c.paint(CYAN, &p.arguments);
            cap_trailer(
                format!("{} {info} {args}", kind(c, BLUE, "🚀", "process")),
                &caps,
            )
        }
        Event::ProcessExit(e) => {
            let p = e.process.as_ref()?;
            let (info, caps) = process_info(c, node, p);
            let args = c.paint(CYAN, &p.arguments);
            let status = if e.signal.is_empty() {
                c.paint(RED, &e.status.to_string())
            } else {
                c.paint(RED, &e.signal)
            };
            cap_trailer(
                format!("{} {info} {args} {status}", kind(c, BLUE, "💥", "exit")),
                &caps,
            )
        }
        Event::ProcessThrottle(t) => {
            let typ = match ThrottleType::try_from(t.r#type) {
                Ok(ThrottleType::ThrottleStart) => c.paint(RED, "START"),
                Ok(ThrottleType::ThrottleStop) => c.paint(GREEN, "STOP "),
                _ => String::new(),
            };
            format!(
                "{} {typ} {}",
                kind(c, RED, "🧬", "throttle"),
                escape(&t.cgroup)
            )
        }
        Event::ProcessLoader(l) => {
            let p = l.process.as_ref()?;
            let (info, caps) = process_info(c, node, p);
            let buildid: String = if l.buildid.is_empty() {
                String::new()
            } else {
                vigil_hex::encode(&l.buildid) + " "
            };
            cap_trailer(
                format!(
                    "{} {info} {buildid}{}",
                    kind(c, BLUE, "🧬", "loader"),
                    c.paint(YELLOW, &l.path)
                ),
                &caps,
            )
        }
        Event::ProcessKprobe(k) => {
            let p = k.process.as_ref()?;
            let (info, caps) = process_info(c, node, p);
            cap_trailer(
                format!(
                    "{} {info} {}",
                    kind(c, BLUE, "❓", "syscall"),
                    escape(&k.function_name)
                ),
                &caps,
            )
        }
        Event::ProcessLsm(l) => {
            let p = l.process.as_ref()?;
            let (info, caps) = process_info(c, node, p);
            cap_trailer(
                format!(
                    "{} {info} {}",
                    kind(c, BLUE, "🔒", "LSM"),
                    escape(&l.function_name)
                ),
                &caps,
            )
        }
        // vigil extension: loss is never silent, not even here.
        Event::EventsLost(l) => format!(
            "{} {} {} {} count {} total {}",
            kind(c, RED, "⚠️", "lost"),
            c.paint(GREEN, node),
            vigil_proto::tetragon::LossStage::try_from(l.stage)
                .map(|s| s.as_str_name())
                .unwrap_or("LOSS_STAGE_UNKNOWN"),
            escape(&l.event_type),
            l.count,
            l.total
        ),
        Event::Test(_) => "TEST EVENT".into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::tetragon::{Capabilities, Pod, ProcessExec, ProcessExit};

    fn proc_(binary: &str, args: &str) -> Process {
        Process {
            binary: binary.into(),
            arguments: args.into(),
            ..Default::default()
        }
    }

    fn exec(p: Process) -> GetEventsResponse {
        GetEventsResponse {
            event: Some(Event::ProcessExec(ProcessExec {
                process: Some(p),
                ..Default::default()
            })),
            node_name: "node1".into(),
            ..Default::default()
        }
    }

    fn exit(p: Process, status: u32, signal: &str) -> GetEventsResponse {
        GetEventsResponse {
            event: Some(Event::ProcessExit(ProcessExit {
                process: Some(p),
                status,
                signal: signal.into(),
                ..Default::default()
            })),
            node_name: "node1".into(),
            ..Default::default()
        }
    }

    const OFF: Colors = Colors(false);

    #[test]
    fn the_documented_lines() {
        let mut p = proc_("/usr/bin/curl", "https://ebpf.io/applications/#tetragon");
        p.pod = Some(Pod {
            namespace: "default".into(),
            name: "xwing".into(),
            ..Default::default()
        });
        assert_eq!(
            render(&exec(p.clone()), OFF, false).unwrap(),
            "🚀 process default/xwing /usr/bin/curl https://ebpf.io/applications/#tetragon"
        );
        assert_eq!(
            render(&exit(p, 60, ""), OFF, false).unwrap(),
            "💥 exit    default/xwing /usr/bin/curl https://ebpf.io/applications/#tetragon 60"
        );
        let cat = proc_("/bin/cat", "/etc/shadow");
        assert_eq!(
            render(&exit(cat, 0, "SIGKILL"), OFF, false).unwrap(),
            "💥 exit    node1 /bin/cat /etc/shadow SIGKILL"
        );
    }

    #[test]
    fn empty_arguments_keep_the_separators() {
        let p = proc_("/usr/bin/true", "");
        assert_eq!(
            render(&exec(p.clone()), OFF, false).unwrap(),
            "🚀 process node1 /usr/bin/true "
        );
        assert_eq!(
            render(&exit(p, 0, ""), OFF, false).unwrap(),
            "💥 exit    node1 /usr/bin/true  0"
        );
    }

    #[test]
    fn caps_and_timestamps() {
        let mut p = proc_("/bin/sh", "");
        p.cap = Some(Capabilities {
            effective: vec![0; 41],
            ..Default::default()
        });
        let line = render(&exec(p), OFF, false).unwrap();
        assert!(line.ends_with(" 🛑 CAP_SYS_ADMIN"), "{line}");
        assert_eq!(
            line.len() - "🛑 CAP_SYS_ADMIN".len(),
            120 - "🛑 CAP_SYS_ADMIN".chars().count() + 1
        );
        let mut e = exec(proc_("/a", "b"));
        e.time = Some(vigil_proto::wkt::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        });
        assert_eq!(
            render(&e, OFF, true).unwrap(),
            "2023-11-14T22:13:20.000000005Z 🚀 process node1 /a b"
        );
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        // A binary named to clear the screen and an argument that returns the cursor,
        // rewrites the line and reverses what follows.
        let mut p = proc_(
            "/tmp/\x1b[2J\x1b[Hevil\u{9b}31m",
            "--ok\r\x1b[1Ainnocent\x07\x7f\n\t\u{202e}gpj.exe\u{2066}x\u{2069}",
        );
        p.pod = Some(Pod {
            namespace: "ns\x1b]0;title\x07".into(),
            name: "pod\u{202d}".into(),
            ..Default::default()
        });
        let mut exit_ev = exit(p.clone(), 0, "SIG\x1bKILL");
        for colors in [OFF, Colors(true)] {
            for line in [
                render(&exec(p.clone()), colors, false).unwrap(),
                render(&exit_ev, colors, true).unwrap(),
            ] {
                let stripped = line
                    .replace("\x1b[0m", "")
                    .replace("\x1b[31m", "")
                    .replace("\x1b[32m", "")
                    .replace("\x1b[34m", "")
                    .replace("\x1b[35m", "")
                    .replace("\x1b[36m", "");
                assert!(!stripped.chars().any(hostile), "{line:?}");
            }
        }
        assert_eq!(
            render(&exec(p), OFF, false).unwrap(),
            "🚀 process ns\\x1b]0;title\\x07/pod\\u{202d} /tmp/\\x1b[2J\\x1b[Hevil\\u{9b}31m \
             --ok\\r\\x1b[1Ainnocent\\x07\\x7f\\n\\t\\u{202e}gpj.exe\\u{2066}x\\u{2069}"
        );
        if let Some(Event::ProcessExit(e)) = &mut exit_ev.event {
            e.process.as_mut().unwrap().pod = None;
        }
        exit_ev.node_name = "node\r".into();
        let line = render(&exit_ev, OFF, false).unwrap();
        assert!(line.starts_with("💥 exit    node\\r /tmp/"), "{line}");
        assert!(line.ends_with(" SIG\\x1bKILL"), "{line}");
        // Plain text is untouched (no allocation either).
        assert!(matches!(
            escape("/usr/bin/curl -sS é ü 🚀"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn colors_as_fatih() {
        let line = render(&exec(proc_("/a", "b")), Colors(true), false).unwrap();
        assert!(
            line.starts_with(
                "\x1b[34m🚀 process\x1b[0m \x1b[32mnode1\x1b[0m \x1b[35m/a\x1b[0m \x1b[36mb\x1b[0m"
            ),
            "{line:?}"
        );
    }
}
