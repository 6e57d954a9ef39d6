//! Stock gRPC clients whatever `:authority` they send. gRPC C-core clients (grpcio, C++,
//! Ruby, C#, PHP) send the unix socket's path there, which upstream h2 refuses; vigil's
//! patched copy (third_party/h2) accepts every `:authority` that grpc-go, Tetragon's server,
//! accepts.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{Agent, free_port, scratch_dir, serial, write_policy};

/// The venv's Python and a directory of grpcio stubs generated now by grpc_tools.protoc
/// from crates/vigil-proto/proto.
pub fn grpcio_stubs(name: &str) -> (String, PathBuf) {
    let venv = std::env::var("VIGIL_VENV").unwrap_or_else(|_| "/var/cache/vigil/venv".into());
    let python = format!("{venv}/bin/python");
    assert!(
        Path::new(&python).exists(),
        "{python} missing: run crates/vigil-proto/tools/setup-venv.sh"
    );
    let has_grpc = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools"])
        .status()
        .unwrap();
    assert!(
        has_grpc.success(),
        "grpcio or grpcio-tools missing in {venv}: run crates/vigil-proto/tools/setup-venv.sh"
    );
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/vigil-proto/proto");
    let stubs = scratch_dir(&format!("{name}-stubs"));
    let gen_script = format!(
        "import sys, glob, os\nfrom importlib.resources import files\nfrom grpc_tools import protoc\n\
         os.chdir({proto:?})\nsys.exit(protoc.main(['protoc', '-I.', '-I' + str(files('grpc_tools') / '_proto'), \
         '--python_out={out}', '--grpc_python_out={out}', *sorted(glob.glob('tetragon/*.proto'))]))",
        proto = proto.display().to_string(),
        out = stubs.display()
    );
    let st = Command::new(&python)
        .args(["-c", &gen_script])
        .status()
        .unwrap();
    assert!(st.success(), "grpc_tools.protoc failed");
    (python, stubs)
}

const POLICY: &str = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: authority-check\nspec: {}\n";

/// Runs tests/integration/python/default_options_client.py against `target` and returns
/// its stdout lines; fails with its stderr (the gRPC status of the failed call).
fn default_options_client(python: &str, stubs: &Path, target: &str) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/integration/python/default_options_client.py");
    let out = Command::new(python)
        .arg(script)
        .arg(stubs)
        .arg(target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "grpcio client with default options against {target} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

fn expected_lines() -> Vec<String> {
    vec![
        format!("version {}", env!("CARGO_PKG_VERSION")),
        "policies authority-check".into(),
        "exec /usr/bin/true authority-probe- started-by-this-client True".into(),
    ]
}

/// The exec line carries the client's per-run marker; compare without it.
fn without_marker(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|line| {
            line.split(' ')
                .map(|word| match word.strip_prefix("authority-probe-") {
                    Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                        "authority-probe-"
                    }
                    _ => word,
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn grpcio_default_options_over_unix_socket_and_tcp() {
    let _g = serial();
    let (python, stubs) = grpcio_stubs("authority");
    let dir = scratch_dir("authority-policy");
    let policy = write_policy(&dir, "authority-check", POLICY);

    // The harness puts the API on unix://<scratch>/vigil.sock; grpcio's own spelling of it.
    let agent = Agent::start("authority-unix", &["--tracing-policy", &policy]);
    let sock = agent.events_path.with_file_name("vigil.sock");
    for target in [
        format!("unix://{}", sock.display()),
        format!("unix:{}", sock.display()),
    ] {
        let lines = default_options_client(&python, &stubs, &target);
        assert_eq!(without_marker(lines), expected_lines(), "{target}");
    }
    agent.stop();

    let port = free_port();
    let agent = Agent::start(
        "authority-tcp",
        &[
            "--server-address",
            &format!("localhost:{port}"),
            "--tracing-policy",
            &policy,
        ],
    );
    let target = format!("localhost:{port}");
    let lines = default_options_client(&python, &stubs, &target);
    assert_eq!(without_marker(lines), expected_lines(), "{target}");
    agent.stop();
}

/// One HTTP/2 frame: 9-byte header then payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// An HPACK string literal (no Huffman) with its 7-bit-prefix length.
fn hpack_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut len = bytes.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend(bytes);
}

/// What the server answered to one GetVersion call sent by hand.
#[derive(Debug, PartialEq)]
enum Answer {
    /// The version string of the GetVersionResponse.
    Version(String),
    /// RST_STREAM with this HTTP/2 error code.
    Reset(u32),
    /// GOAWAY with this HTTP/2 error code.
    GoAway(u32),
}

/// Calls GetVersion over a fresh connection to `sock`, with `authority` as the
/// `:authority` field (left out when `None`), written byte for byte as a client can.
fn get_version_with_authority(sock: &Path, authority: Option<&[u8]>) -> Answer {
    let mut conn = UnixStream::connect(sock).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut block = Vec::new();
    let mut field = |name: &[u8], value: &[u8]| {
        block.push(0x00); // literal without indexing, new name
        hpack_string(&mut block, name);
        hpack_string(&mut block, value);
    };
    field(b":method", b"POST");
    field(b":scheme", b"http");
    field(b":path", b"/tetragon.FineGuidanceSensors/GetVersion");
    if let Some(value) = authority {
        field(b":authority", value);
    }
    field(b"content-type", b"application/grpc");
    field(b"te", b"trailers");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    out.extend(frame(0x1, 0x4, 1, &block)); // HEADERS, END_HEADERS
    out.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0])); // DATA: empty request, END_STREAM
    conn.write_all(&out).unwrap();

    let mut data = Vec::new();
    loop {
        let mut head = [0u8; 9];
        conn.read_exact(&mut head)
            .expect("connection closed or silent before an answer");
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        conn.read_exact(&mut payload).unwrap();
        let code = |at: usize| u32::from_be_bytes(payload[at..at + 4].try_into().unwrap());
        match kind {
            // The ACK may meet a connection the server is closing: its GOAWAY comes next.
            0x4 if flags & 0x1 == 0 => {
                let _ = conn.write_all(&frame(0x4, 0x1, 0, &[]));
            }
            0x3 if stream == 1 => return Answer::Reset(code(0)),
            0x7 => return Answer::GoAway(code(4)),
            0x0 if stream == 1 => data.extend(&payload),
            // Trailers end the call: the response message came before them.
            0x1 if stream == 1 && flags & 0x1 != 0 => break,
            _ => {}
        }
    }
    // gRPC framing (flag, 4-byte length) around GetVersionResponse { string version = 1 }.
    assert!(
        data.len() >= 7 && data[5] == 0x0a,
        "unexpected reply {data:?}"
    );
    let len = usize::from(data[6]);
    Answer::Version(String::from_utf8_lossy(&data[7..7 + len]).into_owned())
}

/// grpc-go takes any `:authority` that is a valid field value (its hpack reader refuses
/// control characters other than tab), an empty or missing one included; so does vigil.
#[test]
fn grpc_accepts_every_authority_grpc_go_accepts() {
    let _g = serial();
    let agent = Agent::start("authority-raw", &[]);
    let sock = agent.events_path.with_file_name("vigil.sock");
    let path = sock.display().to_string();
    let percent_encoded = path.replace('/', "%2F");
    let version = Answer::Version(env!("CARGO_PKG_VERSION").into());
    let accepted: [(&str, Option<&[u8]>); 10] = [
        ("localhost (grpc-go, tetra)", Some(b"localhost")),
        (
            "socket path (gRPC C-core before 1.57)",
            Some(path.as_bytes()),
        ),
        (
            "percent-encoded socket path (gRPC C-core 1.57 on)",
            Some(percent_encoded.as_bytes()),
        ),
        (
            "the unix: target itself",
            Some(b"unix:///var/run/vigil/vigil.sock"),
        ),
        ("empty", Some(b"")),
        ("none", None),
        ("a space and a tab", Some(b"vigil agent\t1")),
        ("non-ASCII UTF-8", Some("vigil-\u{fc}.sock".as_bytes())),
        ("not UTF-8 (Latin-1)", Some(b"vigil-\xfc.sock")),
        ("host and port", Some(b"127.0.0.1:54321")),
    ];
    for (what, authority) in accepted {
        assert_eq!(
            get_version_with_authority(&sock, authority),
            version,
            ":authority {what}"
        );
    }
    // A control character is a malformed field value for grpc-go too: the stream is reset
    // with PROTOCOL_ERROR (1).
    for value in [&b"vigil\x01.sock"[..], b"vigil\x7f", b"vigil\x1b[0m"] {
        assert_eq!(
            get_version_with_authority(&sock, Some(value)),
            Answer::Reset(1),
            ":authority {value:?}"
        );
    }
    agent.stop();
}
