//! vigil's SameFile operator: a file-like argument matches when it IS one of the named files
//! (device + inode), whichever hard link, symbolic link or bind mount it was reached by.
//! Paths are resolved here, when the policy is built; the agent re-resolves them while the
//! policy is loaded ([`SameFileEntry`]) so that a replaced file is still protected.

use vigil_bpf::abi::*;

use super::{Ids, PolicyTables, Unsupported, unsupported};

/// One path of a SameFile filter: which set its identity goes to and what it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SameFileEntry {
    pub set_id: u32,
    pub path: String,
    /// (inode, device as the kernel encodes it); None while the path does not exist.
    pub identity: Option<(u64, u64)>,
}

/// Argument kinds whose reader records the file's identity.
fn is_file_kind(kind: u8) -> bool {
    matches!(
        u32::from(kind),
        VIGIL_ARG_FILE | VIGIL_ARG_PATH | VIGIL_ARG_DENTRY | VIGIL_ARG_BINPRM | VIGIL_ARG_FD
    )
}

/// The filter for `SameFile values` on argument `slot` (reader `kind`).
pub(super) fn same_file_filter(
    path: &str,
    slot: usize,
    values: &[String],
    kind: u8,
    ids: &mut Ids,
    resolve: &dyn Fn(&str) -> Option<(u64, u64)>,
    out: &mut PolicyTables,
) -> Result<vigil_arg_filter, Unsupported> {
    if !is_file_kind(kind) {
        return Err(unsupported(
            path,
            "operator SameFile needs a file-like argument (file, path, dentry, linux_binprm or fd)",
        ));
    }
    let set_id = ids.next_set;
    ids.next_set += 1;
    for v in values {
        let identity = resolve(v);
        if let Some((ino, dev)) = identity {
            out.tables.binaries.push(vigil_bin_key {
                set_id,
                pad: 0,
                ino,
                dev,
            });
        }
        out.same_files.push(SameFileEntry {
            set_id,
            path: v.clone(),
            identity,
        });
    }
    Ok(vigil_arg_filter {
        slot: slot as u8,
        op: VIGIL_OP_SAME_FILE as u8,
        set_id,
        ..Default::default()
    })
}
