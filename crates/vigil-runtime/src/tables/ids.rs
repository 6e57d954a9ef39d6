//! Hook ids, value-set ids and load generations across policies.

use vigil_bpf::abi::VIGIL_MAX_HOOKS;

/// Hook ids, value-set ids and load generations. A hook id indexes the per-hook maps of
/// its policy's objects (so it is below `VIGIL_MAX_HOOKS`) and names the hook in ring
/// records, so it is unique among loaded policies; an unloaded policy gives its ids back
/// ([`Ids::release`]), so that replacing policies for ever never runs out. Records still in
/// the ring for the previous user of an id carry the previous load's generation.
/// Value-set ids only need to be unique within one policy's objects: each build starts
/// them from 0.
#[derive(Debug, Default)]
pub struct Ids {
    used: [u64; VIGIL_MAX_HOOKS as usize / 64],
    /// Hook ids taken by the build in progress, given back if it fails.
    taken: Vec<u32>,
    pub next_set: u32,
    generation: u32,
}

impl Ids {
    /// The lowest free hook id.
    pub(super) fn take_hook(&mut self) -> Option<u32> {
        let id =
            (0..VIGIL_MAX_HOOKS).find(|&i| self.used[i as usize / 64] & (1 << (i % 64)) == 0)?;
        self.used[id as usize / 64] |= 1 << (id % 64);
        self.taken.push(id);
        Some(id)
    }

    /// Gives hook ids back (their policy is unloaded: its objects are detached).
    pub fn release(&mut self, hooks: impl IntoIterator<Item = u32>) {
        for id in hooks {
            if id < VIGIL_MAX_HOOKS {
                self.used[id as usize / 64] &= !(1 << (id % 64));
            }
        }
    }

    /// Generations counted from `base`: agents that follow each other (a kept ring read by
    /// the next one) then do not share (hook id, generation) pairs.
    pub fn with_generation_base(base: u32) -> Self {
        Self {
            generation: base,
            ..Self::default()
        }
    }

    /// Starts a build: value-set ids from 0, a new generation (returned).
    pub(super) fn begin_build(&mut self) -> u32 {
        self.taken.clear();
        self.next_set = 0;
        self.generation = self.generation.wrapping_add(1).max(1);
        self.generation
    }

    /// A build failed: the hook ids it took go back.
    pub(super) fn abandon_build(&mut self) {
        let taken = std::mem::take(&mut self.taken);
        self.release(taken);
    }

    /// Hook ids held by loaded policies.
    pub fn hooks_in_use(&self) -> u32 {
        self.used.iter().map(|w| w.count_ones()).sum()
    }
}
