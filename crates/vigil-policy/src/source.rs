//! Where each decoded field came from, so checks that run after decoding (semantic and
//! kernel checks) can still point at a line and column.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::yaml::Pos;

/// Positions by YAML path, plus the bookkeeping that keeps paths right when a faulty hook
/// is left out of the model.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    pub(crate) file: String,
    /// path -> (position of the key, position of the value)
    pub(crate) fields: HashMap<String, (Pos, Pos)>,
    /// spec field (`kprobes`...) -> original list index of each hook kept in the model.
    pub(crate) origins: BTreeMap<&'static str, Vec<usize>>,
    /// Names of lists and macros that exist but failed to decode: references to them are not
    /// reported again.
    pub(crate) broken_names: BTreeSet<String>,
}

impl SourceMap {
    /// The file name given to `parse_policy`.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Position of the value at `path`, or of the nearest enclosing node that has one.
    pub fn value_pos(&self, path: &str) -> Pos {
        self.lookup(path).1
    }

    /// Position of the key at `path` (for "this field should not be here").
    pub fn key_pos(&self, path: &str) -> Pos {
        self.lookup(path).0
    }

    fn lookup(&self, path: &str) -> (Pos, Pos) {
        let mut current = path;
        loop {
            if let Some(found) = self.fields.get(current) {
                return *found;
            }
            match current.rfind(['.', '[']) {
                Some(cut) => current = &current[..cut],
                None => return (Pos { line: 1, column: 1 }, Pos { line: 1, column: 1 }),
            }
        }
    }

    /// YAML path of the `model_index`-th hook of `field` as written in the file.
    pub fn hook_path(&self, field: &str, model_index: usize) -> String {
        let original = self
            .origins
            .get(field)
            .and_then(|indices| indices.get(model_index).copied())
            .unwrap_or(model_index);
        format!("spec.{field}[{original}]")
    }

    pub(crate) fn record(&mut self, path: &str, key: Pos, value: Pos) {
        self.fields.insert(path.to_string(), (key, value));
    }
}
