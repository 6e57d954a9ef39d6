//! Container ids from cgroup names and paths, for the `docker` field and pod matching.
//!
//! Runtimes name a container's cgroup after its id; where the id sits depends on the
//! runtime and on its cgroup driver:
//!
//! | runtime    | systemd driver (slices and scopes)                         | cgroupfs driver                     |
//! |------------|------------------------------------------------------------|-------------------------------------|
//! | docker     | `system.slice/docker-<id>.scope`                           | `/docker/<id>`                      |
//! | containerd | `kubepods.slice/.../cri-containerd-<id>.scope`             | `/kubepods/<qos>/pod<uid>/<id>`     |
//! | CRI-O      | `kubepods.slice/.../crio-<id>.scope`                       | `/kubepods/<qos>/pod<uid>/crio-<id>`|
//! | podman     | `machine.slice/libpod-<id>.scope` (`/container` below it)  | `/libpod_parent/libpod-<id>`        |
//!
//! Monitors live next to their container with the same id (`crio-conmon-<id>.scope`,
//! `libpod-conmon-<id>.scope`); they are not the container and carry no id here.
//!
//! A name alone proves nothing: any user can create a systemd user scope, and a container
//! that can write its own cgroup tree can create a child, called `docker-<victim id>.scope`.
//! So an id counts only at the place the runtime's own layout puts it, below the ancestor
//! that runtime owns (`system.slice`, `machine.slice`, `kubepods[.slice]`, `docker`,
//! `libpod_parent`), and the shallowest such place wins: cgroups a container creates below
//! its own (systemd inside, nested runtimes) never change its identity. Rootless runtimes
//! (below `user.slice`) are user-made by definition and yield none.

/// Tetragon's `docker` field length.
pub const DOCKER_ID_LEN: usize = 31;

/// Prefixes runtimes put before the id in a cgroup name, longest first where one is a
/// prefix of another.
const PREFIXES: [&str; 5] = [
    "cri-containerd-",
    "containerd-",
    "docker-",
    "crio-",
    "libpod-",
];

/// Extracts a container id from one cgroup path component: `docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`, or a bare id (at
/// least 32 hex characters; runtimes use 64).
pub fn container_id(cgroup_leaf: &str) -> Option<&str> {
    let name = cgroup_leaf.strip_suffix(".scope").unwrap_or(cgroup_leaf);
    let id = PREFIXES
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    let looks_like_id = id.len() >= 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    looks_like_id.then_some(id)
}

/// The container id in a full cgroup path, only where a runtime's layout puts it (see the
/// module's documentation).
pub fn container_id_in_path(path: &str) -> Option<&str> {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let (&root, rest) = parts.split_first()?;
    match root {
        // systemd driver: docker and podman scopes are direct children of their slice.
        "system.slice" => with(rest.first()?, "docker-", true),
        "machine.slice" => with(rest.first()?, "libpod-", true),
        // cgroupfs driver: docker/<id>, libpod_parent/libpod-<id>.
        "docker" => with(rest.first()?, "", false),
        "libpod_parent" => with(rest.first()?, "libpod-", false),
        // kubelet: the container is the first child of a pod cgroup, which sits at most one
        // QoS level below the root.
        "kubepods.slice" | "kubepods" => {
            let systemd = root == "kubepods.slice";
            let pod_at = rest.iter().take(2).position(|c| {
                if systemd {
                    c.starts_with("kubepods-") && c.contains("-pod") && c.ends_with(".slice")
                } else {
                    c.starts_with("pod")
                }
            })?;
            let leaf = rest.get(pod_at + 1)?;
            if systemd {
                ["cri-containerd-", "crio-", "docker-"]
                    .iter()
                    .find_map(|p| with(leaf, p, true))
            } else {
                with(leaf, "crio-", false).or_else(|| with(leaf, "", false))
            }
        }
        _ => None,
    }
}

/// The id in a cgroup name `<prefix><id>[.scope]`.
fn with<'a>(name: &'a str, prefix: &str, scope: bool) -> Option<&'a str> {
    let name = if scope {
        name.strip_suffix(".scope")?
    } else {
        name
    };
    let id = name.strip_prefix(prefix)?;
    is_id(id).then_some(id)
}

fn is_id(id: &str) -> bool {
    id.len() >= 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container id in the text of /proc/<pid>/cgroup: the unified hierarchy (`0::`) first,
/// then the v1 hierarchies in file order. On hybrid hosts a runtime may have placed the
/// process only in v1 hierarchies, so a root unified path does not end the search.
pub fn container_id_in_proc_cgroup(cgroup_file: &str) -> Option<&str> {
    let paths = cgroup_file.lines().filter_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, _controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        Some((id == "0", path))
    });
    let (unified, v1): (Vec<_>, Vec<_>) = paths.partition(|(u, _)| *u);
    unified
        .into_iter()
        .chain(v1)
        .find_map(|(_, path)| container_id_in_path(path))
}

/// The `docker` field for an id: its first 31 characters.
pub fn docker_of_id(id: &str) -> String {
    id.chars().take(DOCKER_ID_LEN).collect()
}

/// The `docker` field for a cgroup leaf name.
pub fn docker_field(cgroup_leaf: &str) -> Option<String> {
    container_id(cgroup_leaf).map(docker_of_id)
}

/// The runtime-neutral id in Kubernetes' `containerID` (`containerd://<id>`,
/// `cri-o://<id>`, `docker://<id>`); a value without a scheme is taken as the id.
pub fn strip_runtime_scheme(container_id: &str) -> &str {
    container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id)
}

/// Tetragon's `in_init_tree` rule: a process is in its container's init tree when it is the
/// container's PID 1 (pid 1 in a PID namespace that is not the host's) or its parent is.
/// Host processes have `nspid == pid` (vigil reports the innermost pid), so host PID 1 is
/// not a container init. A process entered from outside (`runc exec`, `nsenter`) descends
/// from a host process and is not in the tree even though it runs in the container.
pub fn in_init_tree(pid: u32, nspid: u32, parent_in_init_tree: bool) -> bool {
    parent_in_init_tree || (nspid == 1 && pid != 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "551e161c47d8ff0eb665438a7bcd5b4e3ef5a297282b40a92b7c77d6bd168eb3";

    #[test]
    fn runtime_layouts() {
        for name in [
            format!("docker-{ID}.scope"),
            format!("cri-containerd-{ID}.scope"),
            format!("crio-{ID}.scope"),
            format!("libpod-{ID}.scope"),
            ID.to_string(),
        ] {
            assert_eq!(container_id(&name), Some(ID), "{name}");
        }
        assert_eq!(docker_field(ID).unwrap(), "551e161c47d8ff0eb665438a7bcd5b4");
        assert_eq!(docker_of_id(ID).len(), 31);
    }

    #[test]
    fn host_cgroups_have_no_id() {
        for name in ["session-3.scope", "user.slice", "", "/", "init.scope"] {
            assert_eq!(container_id(name), None, "{name}");
        }
    }

    #[test]
    fn monitors_are_not_containers() {
        for name in [
            format!("crio-conmon-{ID}.scope"),
            format!("libpod-conmon-{ID}.scope"),
        ] {
            assert_eq!(container_id(&name), None, "{name}");
        }
    }

    /// Paths as runtimes create them (shapes from real hosts; ids replaced).
    #[test]
    fn full_paths() {
        let pod = "pod8dbc5577-d0e2-4706-8787-57d52c03ddf2";
        let pod_sd = "kubepods-besteffort-pod8dbc5577_d0e2_4706_8787_57d52c03ddf2.slice";
        let cases = [
            // containerd, systemd driver (cgroup v2 and v1 name=systemd alike).
            format!("/kubepods.slice/kubepods-besteffort.slice/{pod_sd}/cri-containerd-{ID}.scope"),
            // containerd / kubelet cgroupfs driver.
            format!("/kubepods/besteffort/{pod}/{ID}"),
            format!("/kubepods/{pod}/{ID}"),
            // CRI-O, both drivers.
            format!("/kubepods.slice/kubepods-burstable.slice/{pod_sd}/crio-{ID}.scope"),
            format!("/kubepods/burstable/{pod}/crio-{ID}"),
            // docker, both drivers.
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
            // podman: systemd (with its payload sub-cgroup) and cgroupfs.
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/libpod_parent/libpod-{ID}"),
            // systemd running inside the container makes its own tree below the scope.
            format!("/kubepods.slice/{pod_sd}/cri-containerd-{ID}.scope/init.scope"),
            format!("/system.slice/docker-{ID}.scope/system.slice/nginx.service"),
            // kind / docker-in-docker: the runtime-owned container is the outer one (the
            // node); what it creates inside is its own business.
            format!("/docker/{ID}/kubepods/besteffort/{pod}/{}", "f".repeat(64)),
        ];
        for path in &cases {
            assert_eq!(container_id_in_path(path), Some(ID), "{path}");
        }
        for host in [
            "/",
            "/user.slice/user-0.slice/session-3.scope",
            "/system.slice/containerd.service",
            "/kubepods.slice/kubepods-besteffort.slice",
            &format!("/kubepods/besteffort/{pod}"),
            &format!("/machine.slice/libpod-conmon-{ID}.scope"),
        ] {
            assert_eq!(container_id_in_path(host), None, "{host}");
        }
    }

    /// Names a user or a container can choose never give an identity (issue 17, item 12):
    /// this machine's shell sits in a v1 memory cgroup named by a 32-hex id; a user makes a
    /// scope `docker-<victim>.scope` in their own systemd tree; a container that can write
    /// its cgroup tree makes a child named after another container.
    #[test]
    fn user_made_cgroups_have_no_identity() {
        let other = "e".repeat(64);
        for forged in [
            "/99774fec0d4c4b3b8e1f6d2a7c9b5e31".to_string(),
            format!("/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{ID}.scope"),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
            format!("/user.slice/user-1000.slice/session-2.scope/{ID}"),
            format!("/system.slice/sshd.service/docker-{ID}.scope"),
            format!("/vigil-test/docker-{ID}.scope"),
            format!("/{ID}"),
        ] {
            assert_eq!(container_id_in_path(&forged), None, "{forged}");
        }
        // Inside a container's own cgroup, a child named after another container.
        for (path, owner) in [
            (
                format!("/system.slice/docker-{other}.scope/docker-{ID}.scope"),
                other.as_str(),
            ),
            (
                format!("/kubepods/besteffort/pod1/{other}/kubepods/besteffort/pod2/{ID}"),
                other.as_str(),
            ),
        ] {
            assert_eq!(container_id_in_path(&path), Some(owner), "{path}");
        }
        let v1_host = "4:memory:/99774fec0d4c4b3b8e1f6d2a7c9b5e31\n0::/user.slice\n";
        assert_eq!(container_id_in_proc_cgroup(v1_host), None);
    }

    #[test]
    fn proc_cgroup_files() {
        // cgroup v2 only.
        let v2 = format!("0::/kubepods/besteffort/pod1/{ID}\n");
        assert_eq!(container_id_in_proc_cgroup(&v2), Some(ID));
        // cgroup v1 only (no unified line).
        let v1 = format!(
            "12:pids:/kubepods/besteffort/pod1/{ID}\n4:memory:/kubepods/besteffort/pod1/{ID}\n\
             1:name=systemd:/kubepods/besteffort/pod1/{ID}\n"
        );
        assert_eq!(container_id_in_proc_cgroup(&v1), Some(ID));
        // Hybrid: the runtime used v1 only and the unified path is the root.
        let hybrid = format!("9:name=systemd:/\n4:memory:/docker/{ID}\n0::/\n");
        assert_eq!(container_id_in_proc_cgroup(&hybrid), Some(ID));
        // Hybrid with an unrelated v1 path before the unified one: v2 wins.
        let other = "f".repeat(64);
        let both = format!("4:memory:/docker/{other}\n0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(container_id_in_proc_cgroup(&both), Some(ID));
        // A host process.
        let host = "9:name=systemd:/user.slice/user-0.slice/session-1.scope\n0::/user.slice\n";
        assert_eq!(container_id_in_proc_cgroup(host), None);
        assert_eq!(container_id_in_proc_cgroup(""), None);
    }

    #[test]
    fn init_tree() {
        // Container init: pid 1 in its namespace, another pid on the host.
        assert!(in_init_tree(4242, 1, false));
        // Its descendants inherit.
        assert!(in_init_tree(4250, 7, true));
        // Host init and host processes.
        assert!(!in_init_tree(1, 1, false));
        assert!(!in_init_tree(300, 300, false));
        // Entered from outside: a container pid, a host parent.
        assert!(!in_init_tree(5000, 12, false));
    }

    #[test]
    fn kubernetes_container_ids() {
        assert_eq!(strip_runtime_scheme(&format!("containerd://{ID}")), ID);
        assert_eq!(strip_runtime_scheme(&format!("cri-o://{ID}")), ID);
        assert_eq!(strip_runtime_scheme(ID), ID);
    }
}
