//! What keeps secrets out of the archive: every part goes through `Redactor::apply` before
//! it is written. It removes PEM private keys, bearer tokens and `key=value` pairs whose key
//! names a credential, and every value of the environment of the agent and of bugtool itself
//! (the archive never collects an environment, this catches one that leaked into a log).

use regex::Regex;

/// Environment values shorter than this are left alone: they are words and numbers that
/// appear everywhere (`root`, `1`, `C.UTF-8`), and scrubbing them would garble the archive.
const MIN_SCRUBBED_VALUE: usize = 8;

/// Variables whose values describe the session, never a credential.
const SESSION_VARIABLES: &[&str] = &[
    "PATH", "HOME", "PWD", "OLDPWD", "SHELL", "USER", "LOGNAME", "LANG", "TERM", "HOSTNAME",
    "MAIL", "SHLVL", "_",
];

/// Values that are paths of this machine (or lists of them): scrubbing them would garble
/// every path the archive names (binaries in the process cache, log file names).
fn is_plainly_not_secret(name: &str, value: &str) -> bool {
    SESSION_VARIABLES.contains(&name)
        || name.starts_with("LC_")
        || name.starts_with("XDG_")
        || value
            .split(':')
            .all(|p| p.starts_with('/') && std::path::Path::new(p).exists())
}

pub struct Redactor {
    /// (variable name, value), longest value first so that a value containing another is
    /// replaced whole.
    env: Vec<(String, String)>,
    private_key: Regex,
    bearer: Regex,
    assignment: Regex,
}

impl Redactor {
    /// `environments`: raw `/proc/<pid>/environ` contents (NUL-separated NAME=value).
    pub fn new(environments: &[Vec<u8>]) -> Redactor {
        let mut env: Vec<(String, String)> = environments
            .iter()
            .flat_map(|raw| raw.split(|&b| b == 0))
            .filter_map(|entry| {
                let entry = String::from_utf8_lossy(entry);
                let (name, value) = entry.split_once('=')?;
                (value.len() >= MIN_SCRUBBED_VALUE && !is_plainly_not_secret(name, value))
                    .then(|| (name.to_string(), value.to_string()))
            })
            .collect();
        env.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.cmp(b)));
        env.dedup_by(|a, b| a.1 == b.1);
        Redactor {
            env,
            private_key: Regex::new(
                r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
            )
            .expect("valid regex"),
            bearer: Regex::new(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+").expect("valid regex"),
            assignment: Regex::new(
                r#"(?i)\b([A-Za-z0-9_.-]*(?:token|secret|password|passwd|api[_-]?key|access[_-]?key|private[_-]?key|credential)[A-Za-z0-9_.-]*)(["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s,;&"'}]+)"#,
            )
            .expect("valid regex"),
        }
    }

    pub fn apply(&self, text: &str) -> String {
        let mut out = self
            .private_key
            .replace_all(text, "<redacted private key>")
            .into_owned();
        out = self
            .bearer
            .replace_all(&out, "Bearer <redacted>")
            .into_owned();
        out = self
            .assignment
            .replace_all(&out, "$1$2<redacted>")
            .into_owned();
        for (name, value) in &self.env {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), &format!("<environment value of {name}>"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_keys_tokens_credentials_and_environment_values() {
        let r = Redactor::new(&[
            b"HOME=/root\0API_MARKER=s3cr3t-value-123\0LANG=C\0SHELL=/bin/sh\0DIR=/usr/bin\0"
                .to_vec(),
        ]);
        let text = "a\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\nabc\n-----END RSA PRIVATE KEY-----\nb \
                    Authorization: Bearer eyJhbGciOi.x-y\n--k8s-token=abcd1234 password: \"hunter2 x\" \
                    seen s3cr3t-value-123 at /root/x api_key='zz'";
        let out = r.apply(text);
        for secret in [
            "MIIE",
            "eyJhbGciOi",
            "abcd1234",
            "hunter2",
            "s3cr3t-value-123",
            "zz'",
        ] {
            assert!(!out.contains(secret), "{secret} left in {out}");
        }
        assert!(out.contains("<redacted private key>"), "{out}");
        assert!(out.contains("<environment value of API_MARKER>"), "{out}");
        // Short values and ordinary words stay.
        assert!(out.contains("/root/x") && out.contains("seen"), "{out}");
        // Paths of this machine stay: they are everywhere in the archive.
        let paths = r.apply("/usr/bin/sh ran /bin/sh");
        assert_eq!(paths, "/usr/bin/sh ran /bin/sh");
        assert!(out.starts_with("a\n") && out.contains("\nb "), "{out}");
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        let r = Redactor::new(&[]);
        let text = "policy dbg-open loaded: 3 hooks\ntoken bucket refilled\n";
        assert_eq!(r.apply(text), text);
    }
}
