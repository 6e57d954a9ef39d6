//! Container ids from cgroup names, for the `docker` field.

/// Tetragon's `docker` field length.
pub const DOCKER_ID_LEN: usize = 31;

/// Extracts a container id from a cgroup leaf name: `docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`, or a bare id (64 hex
/// characters, as containerd's and docker's cgroupfs layouts name them).
pub fn container_id(cgroup_leaf: &str) -> Option<&str> {
    let name = cgroup_leaf.strip_suffix(".scope").unwrap_or(cgroup_leaf);
    let id = [
        "docker-",
        "cri-containerd-",
        "crio-",
        "libpod-",
        "containerd-",
    ]
    .iter()
    .find_map(|p| name.strip_prefix(p))
    .unwrap_or(name);
    let looks_like_id = id.len() >= 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    looks_like_id.then_some(id)
}

/// The `docker` field: the first 31 characters of the id.
pub fn docker_field(cgroup_leaf: &str) -> Option<String> {
    container_id(cgroup_leaf).map(|id| id.chars().take(DOCKER_ID_LEN).collect())
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
    }

    #[test]
    fn host_cgroups_have_no_id() {
        for name in ["session-3.scope", "user.slice", "", "/", "init.scope"] {
            assert_eq!(container_id(name), None, "{name}");
        }
    }
}
