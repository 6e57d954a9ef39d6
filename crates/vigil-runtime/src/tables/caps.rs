//! Selector parts about the calling process's lineage and privileges: matchParentBinaries,
//! matchCapabilities, matchCapabilityChanges, matchNamespaceChanges. Plan values -> kernel
//! table fields (evaluated by bpf/include/vigil_engine_caps.h).

use vigil_bpf::abi::*;
use vigil_policy::model::{BinarySelector, CapabilitiesSelector, NamespaceChangesSelector};
use vigil_policy::types::{CAPABILITIES, CapabilitySet, NamespaceKind};

use super::{Ids, PolicyTables, Unsupported, in_or_not, unsupported};

/// matchParentBinaries: the parent's binary (by inode and device, as matchBinaries) is or is
/// not one of the values; `followChildren` extends it to every older ancestor.
pub(crate) fn parent_binaries_filter(
    path: &str,
    sel: &mut vigil_selector_cfg,
    b: &BinarySelector,
    ids: &mut Ids,
    resolve_binary: &dyn Fn(&str) -> Option<(u64, u64)>,
    out: &mut PolicyTables,
) -> Result<(), Unsupported> {
    let ppath = format!("{path}.matchParentBinaries");
    if sel.pbin_op != VIGIL_OP_NONE {
        return Err(unsupported(
            &ppath,
            "at most one matchParentBinaries entry per selector (as Tetragon)",
        ));
    }
    sel.pbin_op = in_or_not(&ppath, b.operator)?;
    if b.follow_children {
        sel.flags |= VIGIL_SEL_PARENT_FOLLOW;
    }
    sel.pbin_set_id = ids.next_set;
    ids.next_set += 1;
    for v in &b.values {
        // A path that does not exist names no binary: In never holds for it, NotIn always.
        if let Some((ino, dev)) = resolve_binary(v) {
            out.tables.binaries.push(vigil_bin_key {
                set_id: sel.pbin_set_id,
                pad: 0,
                ino,
                dev,
            });
        }
    }
    Ok(())
}

/// The bit number of a capability name (`CAP_SYS_ADMIN` -> 21), any case.
pub fn capability_bit(name: &str) -> Option<u32> {
    CAPABILITIES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name.trim()))
        .map(|i| i as u32)
}

/// Adds one matchCapabilities (`changes` false) or matchCapabilityChanges entry. Entries of a
/// selector all hold (AND). `host_user_ns` gives the host's user namespace inode, needed by
/// `isNamespaceCapability` (the entry then holds only outside it, as Tetragon).
pub(crate) fn capabilities_filter(
    path: &str,
    sel: &mut vigil_selector_cfg,
    c: &CapabilitiesSelector,
    changes: bool,
    host_user_ns: &dyn Fn() -> Result<u32, String>,
) -> Result<(), Unsupported> {
    let name = if changes {
        "matchCapabilityChanges"
    } else {
        "matchCapabilities"
    };
    let cpath = format!("{path}.{name}");
    if sel.ncaps >= VIGIL_MAX_CAP_FILTERS {
        return Err(unsupported(
            &cpath,
            format!(
                "more than {VIGIL_MAX_CAP_FILTERS} matchCapabilities/matchCapabilityChanges entries in one selector"
            ),
        ));
    }
    if c.values.is_empty() {
        return Err(unsupported(&cpath, "no capability listed in values"));
    }
    let mut mask = 0u64;
    for v in &c.values {
        let bit = capability_bit(v)
            .ok_or_else(|| unsupported(&cpath, format!("unknown capability {v:?}")))?;
        mask |= 1u64 << bit;
    }
    let user_ns = if c.is_namespace_capability {
        host_user_ns().map_err(|e| unsupported(&cpath, format!("isNamespaceCapability: {e}")))?
    } else {
        0
    };
    sel.caps[sel.ncaps as usize] = vigil_cap_filter {
        set: match c.set {
            CapabilitySet::Permitted => VIGIL_CAPSET_PERMITTED,
            CapabilitySet::Effective => VIGIL_CAPSET_EFFECTIVE,
            CapabilitySet::Inheritable => VIGIL_CAPSET_INHERITABLE,
        } as u8,
        op: in_or_not(&cpath, c.operator)? as u8,
        changes: u8::from(changes),
        pad: 0,
        user_ns,
        mask,
    };
    sel.ncaps += 1;
    sel.flags |= VIGIL_SEL_TASK_STATE;
    Ok(())
}

/// matchNamespaceChanges: one entry per selector, its namespaces as a bit mask in the order
/// of `struct vigil_namespaces`.
pub(crate) fn namespace_changes_filter(
    path: &str,
    sel: &mut vigil_selector_cfg,
    n: &NamespaceChangesSelector,
) -> Result<(), Unsupported> {
    let npath = format!("{path}.matchNamespaceChanges");
    if sel.nschg_op != VIGIL_OP_NONE {
        return Err(unsupported(
            &npath,
            "at most one matchNamespaceChanges entry per selector",
        ));
    }
    if n.values.is_empty() {
        return Err(unsupported(&npath, "no namespace listed in values"));
    }
    sel.nschg_op = in_or_not(&npath, n.operator)?;
    sel.nschg_mask = n.values.iter().fold(0, |m, k| {
        let bit = NamespaceKind::ALL
            .iter()
            .position(|x| x == k)
            .expect("every kind is listed");
        m | 1 << bit
    });
    sel.flags |= VIGIL_SEL_TASK_STATE;
    Ok(())
}
