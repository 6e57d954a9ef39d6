//! A small mutation fuzzer on stable Rust, for the test tier: replays the saved corpus, then
//! mutates it at random for a time budget, and fails on the first input that panics.
//!
//! - `VIGIL_FUZZ_SECS` (default 3): seconds of mutation per target; 0 replays the corpus only.
//! - `VIGIL_FUZZ_SEED`: the seed to replay (decimal or `0x` hex); each run prints its own.
//!
//! No coverage feedback: the mutations are biased instead towards what breaks parsers of
//! binary formats (integers at the edges of their range, at aligned offsets, near the front
//! and the end where headers and header tables sit) and of text (a per-target dictionary).

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// xorshift64*: small, fast, and the same sequence for the same seed everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point.
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    4,
    8,
    0x10,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX - 1,
    u64::MAX,
];

/// Text the mutator inserts for a target, beside random bytes.
pub fn dictionary(target: &str) -> &'static [&'static str] {
    match target {
        "policy" => &[
            "*a",
            "&a ",
            "*b",
            "&b ",
            "[",
            "]",
            "{",
            "}",
            ": ",
            "- ",
            "\n",
            "\n  ",
            "\n    - ",
            "'",
            "\"",
            "!!str ",
            "? ",
            "|\n",
            "---\n",
            "...\n",
            "#",
            "\t",
            "%YAML 1.2\n",
            "kprobes:",
            "tracepoints:",
            "uprobes:",
            "usdts:",
            "lsmhooks:",
            "selectors:",
            "matchArgs:",
            "matchBinaries:",
            "matchActions:",
            "index: ",
            "operator: ",
            "values:",
            "args:",
            "type: ",
            "call: ",
            "path: ",
            "symbols:",
            "returnArg:",
            "- action: Sigkill",
            "0x7fffffffffffffff",
            "-1",
            "99999999999999999999",
            "1e309",
            "true",
            "~",
            "null",
        ],
        "procfs" => &[
            "(",
            ")",
            ") ",
            " ",
            ":",
            "::",
            "0::/",
            "\n",
            "docker-",
            ".scope",
            "crio-",
            "cri-containerd-",
            "libpod-",
            "/",
            "Uid:\t",
            "Gid:\t",
            "NSpid:\t",
            "CapEff:\t",
            "Z ",
            "://",
            "18446744073709551616",
            "-1",
            "551e161c47d8ff0eb665438a7bcd5b4e3ef5a297282b40a92b7c77d6bd168eb3",
        ],
        "maps" => &[
            "-",
            " ",
            "\n",
            "ffffffffffffffff",
            "0",
            "/",
            "r-xp",
            "+",
            "[stack]",
        ],
        "usdt_arg" => &[
            "@",
            "%",
            "$",
            "(",
            ")",
            "(%",
            "-",
            "0x",
            "-0x-8000000000000000",
            "rip",
            "eax",
            ",",
            "9223372036854775808",
            " ",
            "8",
            "-4",
        ],
        "runtime_answers" => &[
            "\r\n",
            "\r\n\r\n",
            "Transfer-Encoding: chunked\r\n",
            "Content-Length: ",
            "ffffffffffffffff",
            "0\r\n\r\n",
            "\"Name\":",
            "\"Config\":{\"Image\":",
            "\"cgroupsPath\":",
            ".slice:",
            "-.slice",
            "/../",
            ":",
            "-",
        ],
        "pod" => &[
            "{",
            "}",
            "[",
            "]",
            "\"",
            ":",
            ",",
            "null",
            "\"containerID\":",
            "\"containerd://",
            "\"ownerReferences\":",
            "\"controller\":true",
            "\"generateName\":\"x\"",
            "\"pod-template-hash\":",
            "\"kind\":\"Job\"",
            "\"kind\":\"ReplicaSet\"",
            "1e999",
            "-",
            "\"\"",
            "\"startedAt\":\"2024-01-01T00:00:00Z\"",
        ],
        _ => &[],
    }
}

/// An offset in `0..len` (`len` allowed when `end` is set), biased towards the front and the
/// end of the input and towards aligned positions.
fn offset(rng: &mut Rng, len: usize, end: bool) -> usize {
    let span = len + usize::from(end);
    if span == 0 {
        return 0;
    }
    let at = match rng.below(4) {
        0 => rng.below(span.min(128)),
        1 => span - 1 - rng.below(span.min(1024)),
        _ => rng.below(span),
    };
    if rng.chance(50) {
        at & ![1, 3, 7][rng.below(3)]
    } else {
        at
    }
}

/// One random change to `data`; `other` is another corpus input to splice from.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], dict: &[&str]) {
    match rng.below(10) {
        0 if !data.is_empty() => {
            let at = offset(rng, data.len(), false);
            data[at] ^= 1 << rng.below(8);
        }
        1 if !data.is_empty() => {
            let at = offset(rng, data.len(), false);
            data[at] = rng.next_u64() as u8;
        }
        2 => {
            let at = offset(rng, data.len(), true);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            data.splice(at..at, bytes);
        }
        3 if !data.is_empty() => {
            let at = offset(rng, data.len(), false);
            let n = (1 + rng.below(16)).min(data.len() - at);
            data.drain(at..at + n);
        }
        4 | 5 => {
            let width = [1, 2, 4, 8][rng.below(4)];
            let value = match rng.below(4) {
                0 => data.len() as u64 + rng.below(3) as u64,
                1 => rng.next_u64() % 4096,
                _ => INTERESTING[rng.below(INTERESTING.len())],
            };
            let bytes = if rng.chance(80) {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            if data.len() >= width {
                let at = offset(rng, data.len() - width + 1, false);
                data[at..at + width].copy_from_slice(&bytes[..width]);
            }
        }
        6 if !dict.is_empty() => {
            let at = offset(rng, data.len(), true);
            let word = dict[rng.below(dict.len())].as_bytes();
            data.splice(at..at, word.iter().copied());
        }
        7 if !other.is_empty() => {
            let from = rng.below(other.len());
            let n = 1 + rng.below((other.len() - from).min(256));
            let at = offset(rng, data.len(), true);
            if rng.chance(50) {
                data.splice(at..at, other[from..from + n].iter().copied());
            } else {
                let n = n.min(data.len() - at);
                data[at..at + n].copy_from_slice(&other[from..from + n]);
            }
        }
        8 if !data.is_empty() => {
            let from = rng.below(data.len());
            let n = 1 + rng.below((data.len() - from).min(64));
            let chunk = data[from..from + n].to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = offset(rng, data.len(), true);
                data.splice(at..at, chunk.iter().copied());
            }
        }
        _ => data.truncate(rng.below(data.len() + 1)),
    }
}

/// The saved corpus of `target` (`corpus/<target>/`) and the seeds made at run time.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    files.sort();
    let mut out: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    out.extend(crate::seeds::generated(target));
    out
}

/// Where a failing input is written: `<target dir>/fuzz-crashes/`.
pub fn crash_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("fuzz-crashes")
}

/// The run's seed: `VIGIL_FUZZ_SEED`, else the clock.
pub fn seed() -> u64 {
    if let Ok(text) = std::env::var("VIGIL_FUZZ_SEED") {
        let text = text.trim();
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => text.parse().ok(),
        };
        if let Some(seed) = parsed {
            return seed;
        }
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// The mutation budget per target: `VIGIL_FUZZ_SECS`, else 3 s.
pub fn budget() -> Duration {
    std::env::var("VIGIL_FUZZ_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(3), Duration::from_secs_f64)
}

/// What a run did.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub seed: u64,
    pub replayed: usize,
    pub mutated: u64,
    pub elapsed: Duration,
}

/// An input that took this long is reported as a hang.
const SLOW: Duration = Duration::from_secs(2);

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Writes past the test harness's capture, so the seed is on the terminal even when a stack
/// overflow aborts the process.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Replays the corpus of `target`, then mutates it for `budget`. Returns an error naming the
/// seed and the saved input at the first panic or hang.
pub fn run(target: &str, entry: fn(&[u8]), seed: u64, budget: Duration) -> Result<Report, String> {
    run_on(target, entry, &corpus(target), seed, budget)
}

/// [`run`] on a given corpus.
pub fn run_on(
    target: &str,
    entry: fn(&[u8]),
    corpus: &[Vec<u8>],
    seed: u64,
    budget: Duration,
) -> Result<Report, String> {
    say(&format!(
        "fuzz {target}: seed {seed:#x} (VIGIL_FUZZ_SEED={seed:#x} to replay), {:.1} s",
        budget.as_secs_f64()
    ));
    let dict = dictionary(target);
    let max_len = corpus.iter().map(Vec::len).max().unwrap_or(0).max(2048) * 2;
    let fail = |input: &[u8], iteration: u64, why: &str| -> String {
        let dir = crash_dir();
        let path = dir.join(format!("{target}-{seed:x}-{iteration}.bin"));
        let saved = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, input))
            .map_or_else(
                |e| format!("(not saved: {e})"),
                |()| path.display().to_string(),
            );
        format!(
            "fuzz target `{target}` {why} on input {iteration} ({} bytes, saved as {saved}); \
             replay with VIGIL_FUZZ_SEED={seed:#x}",
            input.len()
        )
    };
    let attempt = |input: &[u8], iteration: u64| -> Result<(), String> {
        let start = Instant::now();
        if catch_unwind(AssertUnwindSafe(|| entry(input))).is_err() {
            return Err(fail(input, iteration, "panicked"));
        }
        if start.elapsed() > SLOW {
            return Err(fail(input, iteration, "ran for more than 2 s"));
        }
        Ok(())
    };
    let start = Instant::now();
    for (i, input) in corpus.iter().enumerate() {
        attempt(input, i as u64)?;
    }
    let mut rng = Rng::new(seed ^ fnv(target));
    let mut mutated = 0u64;
    let mut input = Vec::new();
    let mutating = Instant::now();
    while !corpus.is_empty() && mutating.elapsed() < budget {
        input.clear();
        input.extend_from_slice(&corpus[rng.below(corpus.len())]);
        let other = &corpus[rng.below(corpus.len())];
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut input, other, dict);
        }
        input.truncate(max_len);
        mutated += 1;
        attempt(&input, corpus.len() as u64 + mutated)?;
    }
    let report = Report {
        seed,
        replayed: corpus.len(),
        mutated,
        elapsed: start.elapsed(),
    };
    say(&format!(
        "fuzz {target}: {} corpus inputs, {} mutated inputs in {:.1} s, no panic",
        report.replayed,
        report.mutated,
        report.elapsed.as_secs_f64()
    ));
    Ok(report)
}
