//! The Markdown of README.md and docs/: fenced blocks with their test markings, links and
//! heading anchors. The markings are the fence's info string after the language, e.g.
//! ```` ```sh test expect="Health Status: running" ```` (docs/testing.md lists them).

use std::path::{Path, PathBuf};

/// Attributes a fenced block may carry; anything else is a typo the tests refuse.
pub const KNOWN_ATTRS: &[&str] = &[
    "test",
    "no-test",
    "file",
    "invalid",
    "needs",
    "kernel",
    "background",
    "exit",
    "expect",
    "expect-stderr",
    "stdout-lacks",
    "expect-event",
    "no-event",
];

/// An info string's markings, in order: `key` or `key=value`.
pub type Attrs = Vec<(String, Option<String>)>;

pub struct Block {
    /// Relative to the repository root.
    pub file: PathBuf,
    /// Line of the opening fence, from 1.
    pub line: usize,
    pub lang: String,
    pub attrs: Attrs,
    pub body: String,
}

impl Block {
    pub fn has(&self, key: &str) -> bool {
        self.attrs.iter().any(|(k, _)| k == key)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.all(key).into_iter().next()
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.attrs
            .iter()
            .filter(|(k, _)| k == key)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }

    /// `docs/x.md:12`, for messages.
    pub fn place(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

pub struct Page {
    pub path: PathBuf,
    pub text: String,
    pub blocks: Vec<Block>,
    /// From `<!-- docs-test agent-args: ... -->`: flags the page's examples need the agent
    /// to run with.
    pub agent_args: Vec<String>,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page under docs/, in a stable order.
pub fn pages(root: &Path) -> Vec<Page> {
    let mut files = vec![PathBuf::from("README.md")];
    collect_md(root, Path::new("docs"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|rel| {
            let text = std::fs::read_to_string(root.join(&rel))
                .unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
            let blocks = blocks(&rel, &text);
            let agent_args = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("<!-- docs-test agent-args:"))
                .flat_map(|rest| {
                    rest.trim_end_matches("-->")
                        .split_whitespace()
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .collect();
            Page {
                path: rel,
                text,
                blocks,
                agent_args,
            }
        })
        .collect()
}

fn collect_md(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(root.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let child = rel.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            collect_md(root, &child, out);
        } else if child.extension().is_some_and(|e| e == "md") {
            out.push(child);
        }
    }
}

/// The fenced blocks of `text`; a malformed info string panics with its place.
pub fn blocks(file: &Path, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    // While inside a fence: its line, language, markings and the lines so far.
    let mut open: Option<(usize, String, Attrs, Vec<&str>)> = None;
    for (i, line) in text.lines().enumerate() {
        match open.take() {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    let (lang, attrs) = parse_info(info)
                        .unwrap_or_else(|e| panic!("{}:{}: {e}", file.display(), i + 1));
                    open = Some((i + 1, lang, attrs, Vec::new()));
                }
            }
            Some((start, lang, attrs, mut body)) => {
                if line.trim_end() == "```" {
                    let mut body = body.join("\n");
                    body.push('\n');
                    out.push(Block {
                        file: file.to_path_buf(),
                        line: start,
                        lang,
                        attrs,
                        body,
                    });
                } else {
                    body.push(line);
                    open = Some((start, lang, attrs, body));
                }
            }
        }
    }
    assert!(open.is_none(), "{}: unclosed code fence", file.display());
    out
}

/// `sh test expect="a b" exit=1` -> ("sh", [(test, None), (expect, "a b"), (exit, "1")]).
pub fn parse_info(info: &str) -> Result<(String, Attrs), String> {
    let info = info.trim();
    let (lang, mut rest) = info.split_once(' ').unwrap_or((info, ""));
    let mut attrs = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let key_end = rest.find([' ', '=']).unwrap_or(rest.len());
        let key = rest[..key_end].to_string();
        rest = &rest[key_end..];
        let value = if let Some(after) = rest.strip_prefix('=') {
            // Double or single quotes; the other kind may appear inside (JSON needles).
            let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
            if let Some(quote) = quote {
                let quoted = &after[1..];
                let end = quoted
                    .find(quote)
                    .ok_or_else(|| format!("unterminated quote after {key}="))?;
                rest = &quoted[end + 1..];
                Some(quoted[..end].to_string())
            } else {
                let end = after.find(' ').unwrap_or(after.len());
                rest = &after[end..];
                Some(after[..end].to_string())
            }
        } else {
            None
        };
        attrs.push((key, value));
    }
    Ok((lang.to_string(), attrs))
}

/// Link targets `[text](target)` outside code, with their line numbers.
pub fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let prose = without_code_spans(line);
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((i + 1, after[..end].to_string()));
            rest = &after[end + 1..];
        }
    }
    out
}

/// `line` with its inline code spans (any number of backticks) removed.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let fence = "`".repeat(ticks);
        let inner = &rest[start + ticks..];
        match inner.find(&fence) {
            Some(end) => rest = &inner[end + ticks..],
            None => {
                rest = inner;
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The anchors GitHub gives the headings of `text` (`## A (b)` -> `a-b`; repeats get -1, -2).
pub fn anchors(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_fence = !in_fence;
        }
        if in_fence || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#').trim();
        let base: String = heading
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let repeats = out
            .iter()
            .filter(|a| *a == &base || a.strip_prefix(&format!("{base}-")).is_some_and(is_num))
            .count();
        out.push(if repeats == 0 {
            base
        } else {
            format!("{base}-{repeats}")
        });
    }
    out
}

fn is_num(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[test]
fn docs_md_parses_info_strings_and_anchors() {
    let (lang, attrs) = parse_info(r#"sh test expect="a b" exit=1 background"#).unwrap();
    assert_eq!(lang, "sh");
    assert_eq!(
        attrs,
        vec![
            ("test".to_string(), None),
            ("expect".to_string(), Some("a b".to_string())),
            ("exit".to_string(), Some("1".to_string())),
            ("background".to_string(), None),
        ]
    );
    assert!(parse_info(r#"sh expect="open"#).is_err());
    let (_, attrs) = parse_info(r#"sh no-event='"a":"b c"'"#).unwrap();
    assert_eq!(
        attrs,
        vec![("no-event".to_string(), Some(r#""a":"b c""#.to_string()))]
    );
    assert_eq!(
        anchors("# T\n## Executed files' SHA-256 (`--x-y`, vigil's)\n## T\n"),
        vec!["t", "executed-files-sha-256---x-y-vigils", "t-1"]
    );
    assert_eq!(
        links("see [a](b.md#c) and `[no](x)` or ``[no](y)``, [d](../e)"),
        vec![(1, "b.md#c".to_string()), (1, "../e".to_string())]
    );
}
