//! The documentation's promises: README.md starts with the two commands, links between pages
//! resolve, every example block is marked, every policy YAML validates, and every example
//! marked `test` runs against a real agent with the outcome its page describes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::docs_md::{Block, KNOWN_ATTRS, Page, anchors, links, pages, repo_root};
use crate::harness::{Agent, scratch_dir, serial, vigil_bin};

/// How long a foreground example may take, and how long its promised output may take to
/// show up (an event travels kernel -> agent -> file in well under a second here).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);
const OUTPUT_WAIT: Duration = Duration::from_secs(15);

#[test]
fn docs_readme_starts_with_the_two_commands() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 100,
        "README.md has {lines} lines: it must fit on two screens (details belong in docs/)"
    );
    let first = &crate::docs_md::blocks(Path::new("README.md"), &readme)[0];
    assert_eq!(
        readme_commands(first),
        ["sudo ./scripts/run-agent", "sudo ./scripts/test"],
        "README.md must start with the two commands"
    );
    assert!(
        readme.lines().take_while(|l| !l.starts_with("```")).count() <= 2,
        "the two commands must come first in README.md"
    );
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == "exec ./scripts/test"),
        ".ci/run must run the README's test command"
    );
}

/// The commands of a shell block, comments and blank lines left out.
pub fn readme_commands(block: &Block) -> Vec<String> {
    block
        .body
        .lines()
        .map(|l| l.split(" #").next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn docs_links_resolve() {
    let root = repo_root();
    let mut broken = Vec::new();
    let all = pages(&root);
    for page in &all {
        for (line, target) in links(&page.text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                page.path.clone()
            } else {
                normalize(&page.path.parent().unwrap().join(path))
            };
            let place = format!("{}:{line}: {target}", page.path.display());
            if !root.join(&file).exists() {
                broken.push(format!("{place}: {} does not exist", file.display()));
                continue;
            }
            if !anchor.is_empty() {
                let text = std::fs::read_to_string(root.join(&file)).unwrap();
                if !anchors(&text).iter().any(|a| a == anchor) {
                    broken.push(format!("{place}: no heading #{anchor}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                assert!(out.pop(), "{} leaves the repository", p.display());
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn docs_every_example_is_marked() {
    let mut wrong = Vec::new();
    for page in pages(&repo_root()) {
        for b in &page.blocks {
            if let Some(problem) = marking_problem(b) {
                wrong.push(format!("{}: {problem}", b.place()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn marking_problem(b: &Block) -> Option<String> {
    if let Some((k, _)) = b
        .attrs
        .iter()
        .find(|(k, _)| !KNOWN_ATTRS.contains(&k.as_str()))
    {
        return Some(format!("unknown marking {k:?} (known: {KNOWN_ATTRS:?})"));
    }
    if b.has("no-test") && b.get("no-test").is_none_or(str::is_empty) {
        return Some("no-test needs a reason: no-test=\"why\"".into());
    }
    match b.lang.as_str() {
        "" => Some("a code block needs a language (sh, yaml, json, text)".into()),
        "sh" | "bash" | "console" if !(b.has("test") ^ b.has("no-test")) => {
            Some("a shell example is marked `test` (run) or `no-test=\"why\"`".into())
        }
        "yaml" if !(b.get("file").is_some() ^ b.has("no-test")) => Some(
            "a YAML example is a policy marked `file=NAME.yaml` (validated) or `no-test=\"why\"`"
                .into(),
        ),
        "sh" | "bash" | "console" | "yaml" => None,
        _ if !b.attrs.is_empty() => Some(format!("{} blocks are output, never run", b.lang)),
        _ => None,
    }
}

#[test]
fn docs_policies_validate() {
    let dir = scratch_dir("docs-validate");
    let mut failures = Vec::new();
    let mut count = 0;
    for page in pages(&repo_root()) {
        for b in page.blocks.iter().filter(|b| b.lang == "yaml") {
            let Some(name) = b.get("file") else { continue };
            count += 1;
            let path = dir.join(name);
            std::fs::write(&path, &b.body).unwrap();
            let out = Command::new(vigil_bin())
                .args(["tracingpolicy", "validate"])
                .arg(&path)
                .output()
                .unwrap();
            // Errors and warnings are on stdout, what went wrong running it on stderr.
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let ok = match b.get("invalid") {
                Some(needle) => out.status.code() == Some(1) && said.contains(needle),
                None => out.status.success(),
            };
            if !ok {
                failures.push(format!(
                    "{}: {name}: validate exited {:?}{}:\n{}",
                    b.place(),
                    out.status.code(),
                    b.get("invalid")
                        .map(|n| format!(" (expected 1 with {n:?})"))
                        .unwrap_or_default(),
                    said
                ));
            }
            for needs in b.all("needs") {
                println!(
                    "{}: {name}: validated, not loaded: it needs {needs}",
                    b.place()
                );
            }
            for kernel in b.all("kernel") {
                println!(
                    "{}: {name}: validated; it loads on a kernel {kernel}",
                    b.place()
                );
            }
        }
    }
    assert!(count >= 10, "only {count} policies found in the docs");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every page's `test` examples, in order, each page against a fresh agent.
#[test]
fn docs_examples_run() {
    let _g = serial();
    let mut ran = 0;
    for page in pages(&repo_root()) {
        if !page.blocks.iter().any(|b| b.has("test")) {
            continue;
        }
        let stem = page.path.to_string_lossy().replace(['/', '.'], "-");
        let args: Vec<&str> = page.agent_args.iter().map(String::as_str).collect();
        let agent = Agent::start(&format!("docs-{stem}"), &args);
        let env = ExampleEnv {
            workdir: scratch_dir(&format!("docs-work-{stem}")),
            bin_dir: vigil_bin().parent().unwrap().to_path_buf(),
            server: format!(
                "unix://{}",
                agent.events_path.with_file_name("vigil.sock").display()
            ),
            events: agent.events_path.clone(),
        };
        ran += run_page(&page, &env);
        agent.stop();
    }
    assert!(ran >= 20, "only {ran} examples ran");
}

/// Where a page's examples run: the agent they talk to and the `vigil` they call.
pub struct ExampleEnv {
    pub workdir: PathBuf,
    pub bin_dir: PathBuf,
    pub server: String,
    pub events: PathBuf,
}

/// Runs the page's `test` blocks in order, after writing its `file=` policies into the work
/// directory; panics naming the block whose promise does not hold. Returns how many ran.
pub fn run_page(page: &Page, env: &ExampleEnv) -> usize {
    for b in page.blocks.iter().filter(|b| b.lang == "yaml") {
        if let Some(name) = b.get("file") {
            std::fs::write(env.workdir.join(name), &b.body).unwrap();
        }
    }
    let mut background: Vec<(&Block, Child, PathBuf)> = Vec::new();
    let mut ran = 0;
    for b in page.blocks.iter().filter(|b| b.has("test")) {
        if let Some(kernel) = b.get("kernel")
            && !kernel_matches(kernel)
        {
            println!(
                "{}: not run: the example is for a kernel {kernel}",
                b.place()
            );
            continue;
        }
        println!("{}: running:\n{}", b.place(), b.body.trim_end());
        ran += 1;
        let out = env.workdir.join(format!("out-{}", b.line));
        let err = env.workdir.join(format!("err-{}", b.line));
        let mut child = shell(b, env, &out, &err);
        if b.has("background") {
            // As a second terminal would be: give it a moment to connect.
            std::thread::sleep(Duration::from_secs(2));
            background.push((b, child, out));
            continue;
        }
        let deadline = Instant::now() + BLOCK_TIMEOUT;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                kill_group(&child);
                panic!("{}: still running after {BLOCK_TIMEOUT:?}", b.place());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        let said = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
        let want: i32 = b.get("exit").map_or(0, |e| e.parse().unwrap());
        // As a shell reports it in `$?`: 128 + the signal for a killed process (bash -c
        // execs a lone command, so the killed process can be the shell itself).
        let code = status
            .code()
            .or_else(|| std::os::unix::process::ExitStatusExt::signal(&status).map(|s| 128 + s));
        assert_eq!(code, Some(want), "{}: exit status; {said}", b.place());
        for needle in b.all("expect") {
            assert!(
                stdout.contains(needle),
                "{}: no {needle:?} in {said}",
                b.place()
            );
        }
        for needle in b.all("expect-stderr") {
            assert!(
                stderr.contains(needle),
                "{}: no {needle:?} in {said}",
                b.place()
            );
        }
        for needle in b.all("stdout-lacks") {
            assert!(
                !stdout.contains(needle),
                "{}: {needle:?} in {said}",
                b.place()
            );
        }
        check_events(b, &env.events);
    }
    for (b, child, out) in background {
        let deadline = Instant::now() + OUTPUT_WAIT;
        let missing = |text: &str| b.all("expect").into_iter().find(|n| !text.contains(n));
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            let Some(needle) = missing(&text) else { break };
            if Instant::now() > deadline {
                kill_group(&child);
                panic!("{}: no {needle:?} in its output:\n{text}", b.place());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill_group(&child);
    }
    ran
}

fn shell(b: &Block, env: &ExampleEnv, out: &Path, err: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    let path = format!(
        "{}:{}",
        env.bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .arg("-e")
        .arg("-c")
        .arg(&b.body)
        .current_dir(&env.workdir)
        .env("PATH", path)
        .env("VIGIL_SERVER_ADDRESS", &env.server)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(err).unwrap())
        .process_group(0)
        .spawn()
        .expect("spawn bash")
}

fn kill_group(child: &Child) {
    // SAFETY: kill(2) on the process group this test created for the example.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
}

/// `expect-event`: one policy event (not an exec or exit, whose arguments hold the example's
/// own text) holds every needle; `no-event`: then, a second later, none holds it.
fn check_events(b: &Block, events: &Path) {
    let needles = b.all("expect-event");
    let lines = || {
        std::fs::read_to_string(events)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("{\"process_exec\"") && !l.starts_with("{\"process_exit\""))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    if !needles.is_empty() {
        let deadline = Instant::now() + OUTPUT_WAIT;
        while !lines()
            .iter()
            .any(|l| needles.iter().all(|n| l.contains(n)))
        {
            assert!(
                Instant::now() < deadline,
                "{}: no event with all of {needles:?} in {}",
                b.place(),
                events.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let absent = b.all("no-event");
    if !absent.is_empty() {
        std::thread::sleep(Duration::from_secs(1));
        for line in lines() {
            for n in &absent {
                assert!(!line.contains(n), "{}: event with {n:?}: {line}", b.place());
            }
        }
    }
}

/// `kernel=with-kernel-function-hooks` / `without-...`: whether this kernel has kprobes,
/// fentry or BPF LSM, as `vigil probe` reports them (the agent's own facts).
fn kernel_matches(kernel: &str) -> bool {
    let out = Command::new(vigil_bin())
        .args(["probe", "-o", "json"])
        .output()
        .unwrap();
    let probe: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("vigil probe -o json: {e}"));
    let has = kernel_function_hooks(&probe);
    match kernel {
        "with-kernel-function-hooks" => has,
        "without-kernel-function-hooks" => !has,
        other => panic!("unknown kernel marking {other:?}"),
    }
}

fn kernel_function_hooks(probe: &serde_json::Value) -> bool {
    let rows: BTreeMap<String, bool> = probe["features"]
        .as_array()
        .expect("vigil probe -o json: no features")
        .iter()
        .filter(|r| r["kind"] == "hook")
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["present"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    ["kprobe", "fentry", "lsm"].iter().any(|n| {
        *rows
            .get(*n)
            .unwrap_or_else(|| panic!("no {n} hook row in {rows:?}"))
    })
}
