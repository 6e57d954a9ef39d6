//! This node's labels from its Node object: for `spec.nodeSelector` of the cluster's policies
//! and the `node_labels` of events. Unknown (no Node readable) means "fail open": policies
//! load as if selected, as Tetragon's do.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use vigil_policy::model::{LabelRequirement, LabelSelector};

use crate::scope::selector_matches;

/// The node's labels, `None` until the Node object is read.
#[derive(Debug, Clone, Default)]
pub struct NodeLabels(Arc<RwLock<Option<BTreeMap<String, String>>>>);

impl NodeLabels {
    pub fn get(&self) -> Option<BTreeMap<String, String>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets the labels; true when they changed.
    pub fn set(&self, labels: BTreeMap<String, String>) -> bool {
        let mut l = self.0.write().unwrap_or_else(|e| e.into_inner());
        let changed = l.as_ref() != Some(&labels);
        *l = Some(labels);
        changed
    }
}

/// A label selector written as JSON (`matchLabels`, `matchExpressions`), as the API server
/// serves it. Parts that are not a selector's are ignored: the policy parser reports them.
pub fn label_selector_from_json(v: &Value) -> LabelSelector {
    let str_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let match_labels = v["matchLabels"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), str_of(v))).collect())
        .unwrap_or_default();
    let match_expressions = v["matchExpressions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| LabelRequirement {
                    key: str_of(&r["key"]),
                    operator: str_of(&r["operator"]),
                    values: r["values"]
                        .as_array()
                        .map(|vs| vs.iter().map(str_of).collect())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    LabelSelector {
        match_labels,
        match_expressions,
    }
}

/// Whether a policy whose spec is `spec` is for this node: no nodeSelector, unknown node
/// labels (fail open), or a selector the labels satisfy.
pub fn for_node(spec: &Value, labels: Option<&BTreeMap<String, String>>) -> bool {
    let sel = &spec["nodeSelector"];
    match (sel.is_object(), labels) {
        (true, Some(labels)) => selector_matches(&label_selector_from_json(sel), labels),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn node_selector_from_the_api_json() {
        let spec = json!({"nodeSelector": {
            "matchLabels": {"role": "edge"},
            "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}});
        let edge_a = labels(&[("role", "edge"), ("zone", "a")]);
        let edge_c = labels(&[("role", "edge"), ("zone", "c")]);
        let core_a = labels(&[("role", "core"), ("zone", "a")]);
        assert!(for_node(&spec, Some(&edge_a)));
        assert!(!for_node(&spec, Some(&edge_c)));
        assert!(!for_node(&spec, Some(&core_a)));
        // Unknown node: fail open. No selector: every node.
        assert!(for_node(&spec, None));
        assert!(for_node(&json!({}), Some(&core_a)));
        assert!(for_node(&json!({"nodeSelector": {}}), Some(&core_a)));
    }

    #[test]
    fn labels_report_changes() {
        let n = NodeLabels::default();
        assert_eq!(n.get(), None);
        assert!(n.set(labels(&[("a", "1")])));
        assert!(!n.set(labels(&[("a", "1")])));
        assert!(n.set(labels(&[("a", "2")])));
        assert_eq!(n.get(), Some(labels(&[("a", "2")])));
    }
}
