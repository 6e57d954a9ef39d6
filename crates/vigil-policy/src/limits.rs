//! Every numeric limit of the policy language, in one place.
//!
//! Each is at least Tetragon's (tetragon.md §2.9) so that every policy Tetragon accepts fits;
//! exceeding one is an error that names the constant.

/// A named limit, so error messages can say which one was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub name: &'static str,
    pub max: usize,
}

macro_rules! limits {
    ($($(#[$doc:meta])* $ident:ident = $value:expr;)*) => {
        $($(#[$doc])* pub const $ident: Limit = Limit { name: stringify!($ident), max: $value };)*
        /// All limits, for documentation and `explain`.
        pub const ALL: &[Limit] = &[$($ident),*];
    };
}

limits! {
    /// Selectors per hook (`MAX_SELECTORS`).
    MAX_SELECTORS = 5;
    /// Actions per selector (`MAX_ACTIONS`).
    MAX_ACTIONS = 3;
    /// matchArgs (and matchData) entries per selector. Tetragon's docs say "one per index",
    /// but its own examples filter one socket argument twice (DAddr and DPort), so only the
    /// count is limited.
    MAX_MATCH_ARGS = 5;
    /// Values of one scalar integer comparison (`MAX_MATCH_VALUES`).
    MAX_MATCH_VALUES = 4;
    /// PID values per matchPIDs entry.
    MAX_PID_VALUES = 4;
    /// Length of a Prefix value (`STRING_PREFIX_MAX_LENGTH`).
    MAX_PREFIX_LENGTH = 256;
    /// Length of a Postfix value (`STRING_POSTFIX_MAX_LENGTH`).
    MAX_POSTFIX_LENGTH = 128;
    /// Length of an Equal string value (largest string-map key, 4098 bytes, minus padding).
    MAX_STRING_VALUE_LENGTH = 4096;
    /// Values of a SubString comparison (`MAX_SUBSTRING_VALUES`).
    MAX_SUBSTRING_VALUES = 100;
    /// args + data per hook (`EventConfigMaxArgs`).
    MAX_ARGS = 5;
    /// USDT arguments per probe.
    MAX_USDT_ARGS = 5;
    /// Depth of a `resolve` path (`MAX_BTF_ARG_DEPTH`).
    MAX_RESOLVE_DEPTH = 10;
    /// matchBinaries sections using followChildren per policy.
    MAX_FOLLOW_CHILDREN_SECTIONS = 64;
    /// Values per matchNamespaces entry.
    MAX_NAMESPACE_VALUES = 4;
    /// matchNamespaces entries per selector (kernels >= 5.3).
    MAX_NAMESPACES = 10;
    /// Tags per hook (CRD MaxItems).
    MAX_TAGS = 16;
    /// Characters of a hook's `message`.
    MAX_MESSAGE_LENGTH = 256;
    /// matchBinaries / matchParentBinaries entries per selector (CRD MaxItems).
    MAX_BINARY_SELECTORS = 1;
    /// Enforcer definitions per policy.
    MAX_ENFORCERS = 1;
    /// Bytes read for a `char_buf` without `maxData`.
    CHAR_BUF_DEFAULT_BYTES = 4096;
    /// Bytes read for a `char_buf` with `maxData`.
    CHAR_BUF_MAX_DATA_BYTES = 327_360;
    /// Bytes read for a `string` argument (5.11+ objects).
    MAX_STRING_BYTES = 4096;
    /// Nodes of a policy document after alias expansion (each use of an alias counts its
    /// whole subtree), so "billion laughs" documents are refused before they are built. The
    /// largest Tetragon example policy has a few hundred.
    MAX_YAML_NODES = 100_000;
    /// Collections nested in a policy document (including through aliases). Tetragon's
    /// deepest policy path is about a dozen levels; the tree is walked recursively.
    MAX_YAML_DEPTH = 64;
}
