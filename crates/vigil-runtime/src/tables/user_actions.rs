//! Actions the agent runs in user space when a selector's event arrives: GetUrl (an HTTP GET
//! of `argUrl`) and DnsLookup (a DNS query for `argFqdn`), as Tetragon's. The kernel only
//! posts the event; the agent acts on it, fire-and-forget.

use vigil_policy::model::ActionSelector;
use vigil_policy::types::Action;

use super::{Unsupported, unsupported};

/// One user-space action of a selector.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UserAction {
    /// HTTP GET of the URL (`http://`).
    GetUrl(String),
    /// DNS lookup (A record) of the name.
    DnsLookup(String),
}

/// The user-space actions of a selector's matchActions. They need the selector's event:
/// a selector that also says NoPost is refused (the agent would never see the match).
pub(crate) fn user_actions(
    path: &str,
    list: &[ActionSelector],
    return_list: &[ActionSelector],
) -> Result<Vec<UserAction>, Unsupported> {
    if let Some(a) = return_list
        .iter()
        .find(|a| matches!(a.action, Action::GetUrl | Action::DnsLookup))
    {
        return Err(unsupported(
            &format!("{path}.matchReturnActions"),
            format!("{} runs from matchActions only", a.action),
        ));
    }
    let mut out = Vec::new();
    for a in list {
        match a.action {
            Action::GetUrl => {
                let url = a.arg_url.as_deref().unwrap_or("").trim();
                if url.starts_with("https://") {
                    return Err(unsupported(
                        &format!("{path}.matchActions"),
                        format!(
                            "GetUrl of an https:// URL is not supported by this agent yet (http:// only): {url:?}"
                        ),
                    ));
                }
                if !url.starts_with("http://") || url.len() <= "http://".len() {
                    return Err(unsupported(
                        &format!("{path}.matchActions"),
                        format!("GetUrl needs argUrl with an http:// URL, got {url:?}"),
                    ));
                }
                out.push(UserAction::GetUrl(url.to_string()));
            }
            Action::DnsLookup => {
                let name = a.arg_fqdn.as_deref().unwrap_or("").trim();
                if name.is_empty() || name.len() > 253 {
                    return Err(unsupported(
                        &format!("{path}.matchActions"),
                        format!("DnsLookup needs argFqdn with a domain name, got {name:?}"),
                    ));
                }
                out.push(UserAction::DnsLookup(name.to_string()));
            }
            _ => {}
        }
    }
    if !out.is_empty() && list.iter().any(|a| a.action == Action::NoPost) {
        return Err(unsupported(
            &format!("{path}.matchActions"),
            "GetUrl and DnsLookup run when the agent receives the selector's event: not with NoPost",
        ));
    }
    Ok(out)
}

/// Whether Post's `kernelStackTrace` is asked for (the engine then captures the kernel stack).
pub(crate) fn wants_kernel_stack(list: &[ActionSelector]) -> bool {
    list.iter()
        .any(|a| a.action == Action::Post && a.kernel_stack_trace)
}

/// Whether Post's `imaHash` is asked for (the hook then carries the file's IMA digest).
pub(crate) fn wants_ima_hash(list: &[ActionSelector]) -> bool {
    list.iter().any(|a| a.action == Action::Post && a.ima_hash)
}

/// Whether Post's `userStackTrace` is asked for (the engine then captures the user stack).
pub(crate) fn wants_user_stack(list: &[ActionSelector]) -> bool {
    list.iter()
        .any(|a| a.action == Action::Post && a.user_stack_trace)
}
