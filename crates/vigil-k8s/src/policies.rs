//! TracingPolicy objects from the cluster, reconciled with the policies the agent has
//! loaded (pure: the watch in [`crate::watch`] feeds it and runs the actions it returns).
//!
//! A policy is reloaded only when its version (the object's `metadata.generation`, which the
//! API server bumps on spec changes only) differs from the one last acted on, so a re-list
//! after `410 Gone` leaves unchanged policies alone, and a policy that failed to load is not
//! retried until it changes.

use std::collections::BTreeMap;

/// A TracingPolicy as the cluster has it: its name (and namespace, for a
/// TracingPolicyNamespaced), version and the document our own parser validates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    /// Empty for a cluster-wide TracingPolicy.
    pub namespace: String,
    /// Its nodeSelector selects this node (or it has none): loaded; else listed as skipped.
    /// Part of `version`, so that a relabelled node reloads or skips it.
    pub for_node: bool,
    pub version: String,
    pub yaml: String,
}

/// A policy object's identity: same-name policies of different namespaces are different.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl From<&str> for Key {
    fn from(name: &str) -> Self {
        Key {
            namespace: String::new(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

impl Desired {
    pub fn key(&self) -> Key {
        Key {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// What the agent must do to match the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Load(Desired),
    /// Load the new version first, then remove the old one (no gap in enforcement); if the
    /// new one fails, the old one stays.
    Replace(Desired),
    Unload(Key),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    version: String,
    loaded: bool,
}

/// The policies acted on, by key, and the listing in progress.
#[derive(Debug, Default)]
pub struct Reconciler {
    known: BTreeMap<Key, Known>,
    listing: Option<Vec<Desired>>,
}

impl Reconciler {
    /// A (re-)list starts: the objects that follow are the whole desired set.
    pub fn begin_list(&mut self) {
        self.listing = Some(Vec::new());
    }

    /// An object of the listing; outside a listing it is an update.
    pub fn listed(&mut self, d: Desired) -> Option<Action> {
        match &mut self.listing {
            Some(l) => {
                l.push(d);
                None
            }
            None => self.apply(d),
        }
    }

    /// The listing is complete: unload what is gone, load or replace what is new or changed.
    pub fn end_list(&mut self) -> Vec<Action> {
        let listed = self.listing.take().unwrap_or_default();
        let gone: Vec<Key> = self
            .known
            .keys()
            .filter(|k| !listed.iter().any(|d| d.key() == **k))
            .cloned()
            .collect();
        let mut actions: Vec<Action> = gone.into_iter().filter_map(|k| self.delete(k)).collect();
        actions.extend(listed.into_iter().filter_map(|d| self.apply(d)));
        actions
    }

    /// An object added or modified.
    pub fn apply(&mut self, d: Desired) -> Option<Action> {
        match self.known.get(&d.key()) {
            Some(k) if k.version == d.version => None,
            Some(k) if k.loaded => Some(Action::Replace(d)),
            _ => Some(Action::Load(d)),
        }
    }

    /// An object deleted: unload it if it was loaded.
    pub fn delete(&mut self, key: impl Into<Key>) -> Option<Action> {
        let key = key.into();
        let k = self.known.remove(&key)?;
        k.loaded.then_some(Action::Unload(key))
    }

    /// Records the outcome of an action the caller ran.
    pub fn done(&mut self, action: &Action, ok: bool) {
        match action {
            Action::Load(d) => {
                self.known.insert(
                    d.key(),
                    Known {
                        version: d.version.clone(),
                        loaded: ok,
                    },
                );
            }
            // Loaded either way: the new version, or the old one that was kept. The new
            // version is remembered so that a failure is not retried until it changes.
            Action::Replace(d) => {
                self.known.insert(
                    d.key(),
                    Known {
                        version: d.version.clone(),
                        loaded: true,
                    },
                );
            }
            Action::Unload(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, version: &str) -> Desired {
        Desired {
            name: name.into(),
            namespace: String::new(),
            for_node: true,
            version: version.into(),
            yaml: format!("{name}@{version}"),
        }
    }

    /// Runs the actions as a loader that fails for the names in `failing`.
    fn run(r: &mut Reconciler, actions: Vec<Action>, failing: &[&str]) -> Vec<Action> {
        for a in &actions {
            let name = match a {
                Action::Load(d) | Action::Replace(d) => d.name.as_str(),
                Action::Unload(k) => k.name.as_str(),
            };
            r.done(a, !failing.contains(&name));
        }
        actions
    }

    fn list(r: &mut Reconciler, items: &[Desired], failing: &[&str]) -> Vec<Action> {
        r.begin_list();
        for i in items {
            assert_eq!(r.listed(i.clone()), None);
        }
        let actions = r.end_list();
        run(r, actions, failing)
    }

    #[test]
    fn first_list_loads_everything() {
        let mut r = Reconciler::default();
        let a = list(&mut r, &[d("a", "1"), d("b", "3")], &[]);
        assert_eq!(
            a,
            vec![Action::Load(d("a", "1")), Action::Load(d("b", "3"))]
        );
    }

    #[test]
    fn relist_with_unchanged_policies_does_nothing() {
        let mut r = Reconciler::default();
        list(&mut r, &[d("a", "1"), d("b", "3")], &[]);
        assert_eq!(list(&mut r, &[d("a", "1"), d("b", "3")], &[]), vec![]);
    }

    #[test]
    fn relist_unloads_the_gone_and_replaces_the_changed() {
        let mut r = Reconciler::default();
        list(&mut r, &[d("a", "1"), d("b", "3")], &[]);
        let a = list(&mut r, &[d("b", "4"), d("c", "1")], &[]);
        assert_eq!(
            a,
            vec![
                Action::Unload("a".into()),
                Action::Replace(d("b", "4")),
                Action::Load(d("c", "1"))
            ]
        );
    }

    #[test]
    fn modified_replaces_only_when_the_version_changes() {
        let mut r = Reconciler::default();
        list(&mut r, &[d("a", "1")], &[]);
        assert_eq!(r.apply(d("a", "1")), None);
        let a = r.apply(d("a", "2")).unwrap();
        assert_eq!(a, Action::Replace(d("a", "2")));
        r.done(&a, true);
        assert_eq!(r.delete("a"), Some(Action::Unload("a".into())));
        assert_eq!(r.delete("a"), None);
    }

    #[test]
    fn a_failed_load_is_not_retried_until_it_changes_and_is_never_unloaded() {
        let mut r = Reconciler::default();
        list(&mut r, &[d("bad", "1")], &["bad"]);
        assert_eq!(list(&mut r, &[d("bad", "1")], &[]), vec![]);
        // Changed: loaded afresh (there is nothing to replace).
        let a = r.apply(d("bad", "2")).unwrap();
        assert_eq!(a, Action::Load(d("bad", "2")));
        r.done(&a, false);
        assert_eq!(r.delete("bad"), None);
    }

    #[test]
    fn a_failed_replace_keeps_the_old_one_loaded() {
        let mut r = Reconciler::default();
        list(&mut r, &[d("a", "1")], &[]);
        let a = r.apply(d("a", "2")).unwrap();
        r.done(&a, false);
        assert_eq!(r.apply(d("a", "2")), None);
        // The old version is still loaded: a deletion unloads it.
        assert_eq!(r.delete("a"), Some(Action::Unload("a".into())));
    }

    #[test]
    fn same_name_in_two_namespaces_are_two_policies() {
        let mut r = Reconciler::default();
        let mut a = d("p", "1");
        a.namespace = "a".into();
        let mut b = d("p", "1");
        b.namespace = "b".into();
        let actions = list(&mut r, &[a.clone(), b.clone()], &[]);
        assert_eq!(actions, vec![Action::Load(a.clone()), Action::Load(b)]);
        // Deleting one leaves the other.
        let gone = list(&mut r, &[a.clone()], &[]);
        assert_eq!(
            gone,
            vec![Action::Unload(Key {
                namespace: "b".into(),
                name: "p".into()
            })]
        );
        assert_eq!(r.apply(a), None);
    }

    #[test]
    fn an_object_outside_a_listing_is_an_update() {
        let mut r = Reconciler::default();
        assert_eq!(r.listed(d("a", "1")), Some(Action::Load(d("a", "1"))));
    }
}
