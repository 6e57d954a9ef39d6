//! Hook decoding: kprobes/fentries, tracepoints, uprobes, usdts, lsmhooks.

use crate::decode::{Decoder, Fields, decode_arg};
use crate::error::ErrorCode;
use crate::model::*;
use crate::types::Action;
use crate::yaml::Node;

fn args(d: &mut Decoder<'_>, f: &mut Fields<'_>, key: &str) -> Vec<ArgSpec> {
    d.items(f, key, decode_arg).0
}

fn selectors(d: &mut Decoder<'_>, f: &mut Fields<'_>) -> Vec<Selector> {
    d.items(f, "selectors", crate::decode_selector::decode_selector)
        .0
}

fn ignore(d: &mut Decoder<'_>, f: &mut Fields<'_>) -> Ignore {
    let Some(node) = d.take(f, "ignore") else {
        return Ignore::default();
    };
    let path = f.child("ignore");
    let Some(mut i) = d.mapping(node, &path) else {
        return Ignore::default();
    };
    let out = Ignore {
        call_not_found: d.flag(&mut i, "callNotFound"),
        digest_verification_failure: d.flag(&mut i, "digestVerificationFailure"),
    };
    d.finish(&i);
    out
}

pub(crate) fn decode_kprobe(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
    _kind: HookKind,
) -> Option<KProbeSpec> {
    let mut f = d.mapping(node, path)?;
    let call = d.req_string(&mut f, "call");
    let return_arg = match d.take(&mut f, "returnArg") {
        Some(n) => decode_arg(d, n, &f.child("returnArg")),
        None => None,
    };
    let return_arg_action = match d.take(&mut f, "returnArgAction") {
        Some(n) => {
            let child = f.child("returnArgAction");
            let text = d.string(n, &child)?;
            match Action::parse(&text) {
                Some(a @ (Action::TrackSock | Action::UntrackSock)) => Some(a),
                _ => {
                    d.error(
                        &child,
                        n.pos,
                        ErrorCode::InvalidValue,
                        format!("returnArgAction `{text}`: only TrackSock or UntrackSock"),
                    );
                    None
                }
            }
        }
        None => None,
    };
    let spec = KProbeSpec {
        call: call.clone().unwrap_or_default(),
        syscall: d.opt_bool(&mut f, "syscall").unwrap_or(true),
        r#return: d.flag(&mut f, "return"),
        args: args(d, &mut f, "args"),
        data: args(d, &mut f, "data"),
        return_arg,
        return_arg_action,
        selectors: selectors(d, &mut f),
        message: d.opt_string(&mut f, "message"),
        tags: d.string_list(&mut f, "tags"),
        ignore: ignore(d, &mut f),
    };
    d.finish(&f);
    call?;
    Some(spec)
}

pub(crate) fn decode_tracepoint(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
) -> Option<TracepointSpec> {
    let mut f = d.mapping(node, path)?;
    let subsystem = d.req_string(&mut f, "subsystem");
    let event = d.req_string(&mut f, "event");
    let spec = TracepointSpec {
        subsystem: subsystem.clone().unwrap_or_default(),
        event: event.clone().unwrap_or_default(),
        raw: d.flag(&mut f, "raw"),
        args: args(d, &mut f, "args"),
        selectors: selectors(d, &mut f),
        message: d.opt_string(&mut f, "message"),
        tags: d.string_list(&mut f, "tags"),
    };
    d.finish(&f);
    subsystem?;
    event?;
    Some(spec)
}

pub(crate) fn decode_uprobe(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<UProbeSpec> {
    let mut f = d.mapping(node, path)?;
    let target = d.req_string(&mut f, "path");
    let return_arg = match d.take(&mut f, "returnArg") {
        Some(n) => decode_arg(d, n, &f.child("returnArg")),
        None => None,
    };
    let spec = UProbeSpec {
        path: target.clone().unwrap_or_default(),
        btf_path: d.opt_string(&mut f, "btfPath"),
        symbols: d.string_list(&mut f, "symbols"),
        offsets: d.unsigned_list(&mut f, "offsets"),
        addrs: d.unsigned_list(&mut f, "addrs"),
        ref_ctr_offsets: d.unsigned_list(&mut f, "refCtrOffsets"),
        r#return: d.flag(&mut f, "return"),
        return_arg,
        args: args(d, &mut f, "args"),
        data: args(d, &mut f, "data"),
        selectors: selectors(d, &mut f),
        message: d.opt_string(&mut f, "message"),
        tags: d.string_list(&mut f, "tags"),
        binary_digests: d.string_list(&mut f, "binaryDigests"),
        ignore: ignore(d, &mut f),
    };
    d.finish(&f);
    target?;
    Some(spec)
}

pub(crate) fn decode_usdt(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<UsdtSpec> {
    let mut f = d.mapping(node, path)?;
    let target = d.req_string(&mut f, "path");
    let provider = d.req_string(&mut f, "provider");
    let name = d.req_string(&mut f, "name");
    let spec = UsdtSpec {
        path: target.clone().unwrap_or_default(),
        btf_path: d.opt_string(&mut f, "btfPath"),
        provider: provider.clone().unwrap_or_default(),
        name: name.clone().unwrap_or_default(),
        args: args(d, &mut f, "args"),
        selectors: selectors(d, &mut f),
        message: d.opt_string(&mut f, "message"),
        tags: d.string_list(&mut f, "tags"),
    };
    d.finish(&f);
    target?;
    provider?;
    name?;
    Some(spec)
}

pub(crate) fn decode_lsm(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<LsmHookSpec> {
    let mut f = d.mapping(node, path)?;
    let hook = d.req_string(&mut f, "hook");
    let spec = LsmHookSpec {
        hook: hook.clone().unwrap_or_default(),
        args: args(d, &mut f, "args"),
        selectors: selectors(d, &mut f),
        message: d.opt_string(&mut f, "message"),
        tags: d.string_list(&mut f, "tags"),
    };
    d.finish(&f);
    hook?;
    Some(spec)
}
