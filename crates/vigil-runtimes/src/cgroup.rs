//! Where a container's cgroup is, from the `linux.cgroupsPath` of its OCI spec (what the
//! runtime was told to create), relative to the cgroup v2 root.
//!
//! runc reads the path two ways: with the cgroupfs driver it is a path (containerd's
//! default for `ctr run` is `/<namespace>/<id>`); with the systemd driver it is
//! `slice:prefix:name`, which becomes the scope `prefix-name.scope` below the slice, each
//! dash of a slice name adding one level (`a-b.slice` is `a.slice/a-b.slice`).

/// Longest cgroupsPath accepted (a spec is the runtime's input, but not always ours).
const MAX_PATH: usize = 4096;

/// The cgroup directory, relative to the cgroup v2 root, of an OCI `cgroupsPath`; `None`
/// when it is empty, relative (runc puts those below its own cgroup, unknown here) or not
/// a plain path (`.`/`..` components, over `MAX_PATH`).
pub fn cgroup_dir(cgroups_path: &str) -> Option<String> {
    if cgroups_path.is_empty() || cgroups_path.len() > MAX_PATH {
        return None;
    }
    let dir = if let Some(abs) = cgroups_path.strip_prefix('/') {
        abs.trim_end_matches('/').to_string()
    } else {
        systemd_dir(cgroups_path)?
    };
    let plain = dir
        .split('/')
        .all(|c| !c.is_empty() && c != "." && c != "..");
    plain.then_some(dir)
}

/// `slice:prefix:name` -> `<slice dirs>/prefix-name.scope`.
fn systemd_dir(path: &str) -> Option<String> {
    let mut parts = path.split(':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    let slashed = [slice, prefix, name].iter().any(|p| p.contains('/'));
    if parts.next().is_some() || name.is_empty() || slashed {
        return None;
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut dirs = slice_dirs(slice)?;
    // A name that is a slice is the unit itself (runc's rule).
    if name.ends_with(".slice") {
        dirs.push(name.to_string());
    } else if prefix.is_empty() {
        dirs.push(format!("{name}.scope"));
    } else {
        dirs.push(format!("{prefix}-{name}.scope"));
    }
    Some(dirs.join("/"))
}

/// `a-b-c.slice` -> [`a.slice`, `a-b.slice`, `a-b-c.slice`]; `-.slice` is the root.
fn slice_dirs(slice: &str) -> Option<Vec<String>> {
    let stem = slice.strip_suffix(".slice")?;
    if stem == "-" {
        return Some(Vec::new());
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return None;
    }
    let mut dirs = Vec::new();
    for (i, _) in stem.match_indices('-') {
        dirs.push(format!("{}.slice", &stem[..i]));
    }
    dirs.push(slice.to_string());
    Some(dirs)
}

/// The unified-hierarchy path (`0::`) in the text of /proc/<pid>/cgroup, without its
/// leading slash.
pub fn unified_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroupfs_paths() {
        assert_eq!(cgroup_dir("/somens/web").as_deref(), Some("somens/web"));
        assert_eq!(cgroup_dir("/a/b/").as_deref(), Some("a/b"));
        assert_eq!(cgroup_dir(""), None);
        assert_eq!(cgroup_dir("/"), None);
        assert_eq!(cgroup_dir("/a/../b"), None);
        assert_eq!(cgroup_dir("/a//b"), None);
        assert_eq!(cgroup_dir(&format!("/{}", "a".repeat(MAX_PATH))), None);
    }

    #[test]
    fn systemd_paths() {
        assert_eq!(
            cgroup_dir("system.slice:docker:abc").as_deref(),
            Some("system.slice/docker-abc.scope")
        );
        assert_eq!(
            cgroup_dir(":containerd:web").as_deref(),
            Some("system.slice/containerd-web.scope")
        );
        assert_eq!(
            cgroup_dir("kubepods-besteffort-pod1.slice:cri-containerd:ff").as_deref(),
            Some(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/\
                 cri-containerd-ff.scope"
            )
        );
        assert_eq!(cgroup_dir("-.slice::x").as_deref(), Some("x.scope"));
        assert_eq!(
            cgroup_dir("a.slice:p:b.slice").as_deref(),
            Some("a.slice/b.slice")
        );
        assert_eq!(cgroup_dir("notaslice:p:x"), None);
        assert_eq!(cgroup_dir("a--b.slice:p:x"), None);
        assert_eq!(cgroup_dir("a.slice:p:"), None);
        assert_eq!(cgroup_dir("a.slice:p:x:y"), None);
        assert_eq!(cgroup_dir("a.slice:p:x/../y"), None);
        assert_eq!(cgroup_dir("relative/path"), None);
    }

    #[test]
    fn unified_line() {
        let text = "12:cpu:/x\n0::/somens/web\n";
        assert_eq!(unified_path(text), Some("somens/web"));
        assert_eq!(unified_path("0::/\n"), Some(""));
        assert_eq!(unified_path("1:name=systemd:/a\n"), None);
    }
}
