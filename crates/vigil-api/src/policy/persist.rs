//! `--persist-grpc-policies`: one file per gRPC policy, `dir/{namespace}.{name}.yaml`
//! (`_` for a cluster-wide policy), plus a `.disabled` marker beside it.
//!
//! The agent runs as root and the names come from any API client, so the file name is
//! built only from names checked as Kubernetes checks them (DNS-1123), files are written
//! through a fresh temporary file (`O_NOFOLLOW|O_CREAT|O_EXCL`, mode 0600) renamed into
//! place, and only regular files are ever removed: a symlink or a `..` in a name can never
//! make the agent write or delete a file outside the directory.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use vigil_policy::state::PolicyId;

/// Kubernetes' DNS-1123 subdomain: the rule for object names (`metadata.name`).
pub const NAME_MAX: usize = 253;
/// Kubernetes' DNS-1123 label: the rule for namespaces.
pub const NAMESPACE_MAX: usize = 63;

fn label_ok(l: &str) -> bool {
    let b = l.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Checks a policy name (`field` names it in the message, e.g. `metadata.name`).
pub fn check_name(field: &str, name: &str) -> Result<(), String> {
    if name.len() <= NAME_MAX && name.split('.').all(label_ok) {
        return Ok(());
    }
    Err(format!(
        "{field} {name:?}: not a valid name (a DNS-1123 subdomain: lowercase letters, digits, \
         '-' and '.', starting and ending with a letter or digit, at most {NAME_MAX} characters)"
    ))
}

/// Checks a namespace; empty means cluster-wide and is valid.
pub fn check_namespace(field: &str, ns: &str) -> Result<(), String> {
    if ns.is_empty() || (ns.len() <= NAMESPACE_MAX && label_ok(ns)) {
        return Ok(());
    }
    Err(format!(
        "{field} {ns:?}: not a valid namespace (a DNS-1123 label: lowercase letters, digits \
         and '-', starting and ending with a letter or digit, at most {NAMESPACE_MAX} characters)"
    ))
}

/// The persistence directory.
#[derive(Debug, Clone)]
pub struct PersistDir {
    dir: PathBuf,
}

/// Distinguishes temporary files of concurrent writes within this process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl PersistDir {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The policy's file stem, or `None` for an id whose name or namespace is not valid
    /// (such a policy is never persisted; adding it over gRPC is refused earlier).
    fn stem(id: &PolicyId) -> Option<String> {
        check_name("name", &id.name).ok()?;
        check_namespace("namespace", &id.namespace).ok()?;
        let ns = if id.namespace.is_empty() {
            "_"
        } else {
            id.namespace.as_str()
        };
        Some(format!("{ns}.{}", id.name))
    }

    pub fn yaml_path(&self, id: &PolicyId) -> Option<PathBuf> {
        Some(self.dir.join(format!("{}.yaml", Self::stem(id)?)))
    }

    fn marker_path(&self, id: &PolicyId) -> Option<PathBuf> {
        Some(self.dir.join(format!("{}.disabled", Self::stem(id)?)))
    }

    /// Writes `data` to `path` (inside the directory) atomically, mode 0600.
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        // Only the directory itself is root-only: parents created here keep the usual mode
        // (the API socket's directory, /var/run/vigil, may be shared with a socket group).
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other("no file name"))?
            .to_string_lossy();
        let tmp = self.dir.join(format!(
            ".{name}.tmp.{}.{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> io::Result<()> {
            // O_EXCL: never reuse (or follow) anything already at the temporary name.
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            // rename(2) replaces a symlink at `path` itself, never its target.
            std::fs::rename(&tmp, path)
        };
        write().inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    /// Removes `path` if it is a regular file (a symlink or directory planted there stays).
    fn remove_file(path: &Path) -> io::Result<()> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_file() => std::fs::remove_file(path),
            Ok(_) => Err(io::Error::other(format!(
                "{}: not a regular file; left in place",
                path.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Saves the policy's YAML; logs a failure (the policy runs; it does not persist).
    pub fn save(&self, id: &PolicyId, yaml: &str) {
        let Some(path) = self.yaml_path(id) else {
            tracing::error!(
                name = id.name,
                namespace = id.namespace,
                "policy not persisted: invalid name or namespace"
            );
            return;
        };
        if let Err(e) = self.write_file(&path, yaml.as_bytes()) {
            tracing::error!(path = %path.display(), error = %e, "cannot persist the policy");
        }
    }

    /// Sets or clears the policy's disabled marker.
    pub fn set_enabled(&self, id: &PolicyId, enabled: bool) {
        let Some(marker) = self.marker_path(id) else {
            return;
        };
        let r = if enabled {
            Self::remove_file(&marker)
        } else {
            self.write_file(&marker, b"")
        };
        if let Err(e) = r {
            tracing::error!(path = %marker.display(), error = %e, "cannot persist the policy state");
        }
    }

    /// Removes the policy's files.
    pub fn remove(&self, id: &PolicyId) {
        for p in [self.marker_path(id), self.yaml_path(id)]
            .into_iter()
            .flatten()
        {
            if let Err(e) = Self::remove_file(&p) {
                tracing::error!(path = %p.display(), error = %e, "cannot remove a persisted policy file");
            }
        }
    }

    /// The persisted policies: (YAML file, disabled), regular files only, sorted.
    pub fn entries(&self) -> Vec<(PathBuf, bool)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|f| {
                let disabled = std::fs::symlink_metadata(f.with_extension("disabled"))
                    .is_ok_and(|m| m.file_type().is_file());
                (f, disabled)
            })
            .collect()
    }

    /// Reads a persisted policy without following a symlink.
    pub fn read(path: &Path) -> io::Result<String> {
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        let mut s = String::new();
        io::Read::read_to_string(&mut f, &mut s)?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_policy::state::Domain;

    #[test]
    fn names_and_namespaces_as_kubernetes() {
        for ok in ["a", "tp", "my-policy", "a.b-c.d", "0abc", &"a".repeat(253)] {
            assert!(check_name("name", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "..",
            "../x",
            "/etc/passwd",
            "A",
            "a_b",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a/b",
            "a\0b",
            &"a".repeat(254),
        ] {
            let e = check_name("metadata.name", bad).unwrap_err();
            assert!(e.starts_with("metadata.name "), "{e}");
        }
        for ok in ["", "default", "kube-system", &"n".repeat(63)] {
            assert!(check_namespace("namespace", ok).is_ok(), "{ok}");
        }
        for bad in ["a.b", "../../tmp/x", "_", "Default", &"n".repeat(64)] {
            assert!(check_namespace("namespace", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_ids_have_no_path() {
        let p = PersistDir::new("/x".into());
        let id = |ns: &str, name: &str| PolicyId {
            domain: Domain::Grpc,
            namespace: ns.into(),
            name: name.into(),
        };
        assert_eq!(p.yaml_path(&id("", "tp")), Some("/x/_.tp.yaml".into()));
        assert_eq!(p.yaml_path(&id("ns", "a.b")), Some("/x/ns.a.b.yaml".into()));
        assert_eq!(p.yaml_path(&id("../../tmp/x", "tp")), None);
        assert_eq!(p.yaml_path(&id("", "../../etc/x")), None);
        assert_eq!(p.yaml_path(&id("/abs", "tp")), None);
    }
}
