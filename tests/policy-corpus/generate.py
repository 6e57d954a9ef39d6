# Generates the malformed-policy corpus. Each case marks the offending token with @@
# (one marker per expected error, in order); this script strips the markers and computes
# line:column (1-based) independently of the parser under test.
import os, sys
OUT = sys.argv[1]
HDR = 4  # number of header lines written above the body (expect lines + description)

def head(kind="TracingPolicy", name="bad"):
    return f"apiVersion: cilium.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: \"{name}\"\nspec:\n"

KP = head() + """  kprobes:
  - call: "fd_install"
    syscall: false
    args:
    - index: 0
      type: "int"
    - index: 1
      type: "file"
"""

def kp_sel(sel):
    return KP + "    selectors:\n" + sel

cases = [
("yaml-syntax-mapping-in-plain", "YAML syntax error: a value containing ': '",
 [("-", "yaml-syntax")], head() + "  kprobes:\n  - call: fd_install@@: oops\n"),
("api-version", "wrong apiVersion", [("apiVersion", "api-version")],
 "apiVersion: @@cilium.io/v2\nkind: TracingPolicy\nmetadata:\n  name: x\nspec: {}\n"),
("kind", "unknown kind", [("kind", "kind")],
 "apiVersion: cilium.io/v1alpha1\nkind: @@TracePolicy\nmetadata:\n  name: x\nspec: {}\n"),
("metadata-name-missing", "metadata without name", [("metadata.name", "missing-field")],
 "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  @@labels: {}\nspec: {}\n"),
("spec-unknown-field", "typo in a spec field", [("spec.kprobe", "unknown-field")],
 head() + "  @@kprobe:\n  - call: fd_install\n"),
("kprobe-missing-call", "kprobe without call", [("spec.kprobes[0].call", "missing-field")],
 head() + "  kprobes:\n  - @@syscall: false\n"),
("kprobes-not-a-list", "kprobes given as a mapping", [("spec.kprobes", "wrong-type")],
 head() + "  kprobes:\n    @@call: fd_install\n"),
("syscall-not-bool", "syscall is not a boolean", [("spec.kprobes[0].syscall", "invalid-bool")],
 head() + "  kprobes:\n  - call: fd_install\n    syscall: @@maybe\n"),
("arg-index-not-number", "argument index is text", [("spec.kprobes[0].args[0].index", "invalid-number")],
 head() + "  kprobes:\n  - call: fd_install\n    syscall: false\n    args:\n    - index: @@\"first\"\n      type: int\n"),
("arg-index-negative", "argument index is negative", [("spec.kprobes[0].args[0].index", "invalid-number")],
 head() + "  kprobes:\n  - call: fd_install\n    syscall: false\n    args:\n    - index: @@-1\n      type: int\n"),
("arg-type-unknown", "argument type misspelt", [("spec.kprobes[0].args[0].type", "unknown-arg-type")],
 head() + "  kprobes:\n  - call: fd_install\n    syscall: false\n    args:\n    - index: 0\n      type: @@\"strng\"\n"),
("arg-type-auto-on-kprobe", "auto is only for tracepoints", [("spec.kprobes[0].args[0].type", "type-not-allowed")],
 head() + "  kprobes:\n  - call: fd_install\n    syscall: false\n    args:\n    - index: 0\n      type: @@auto\n"),
("too-many-args", "six arguments, limit is five", [("spec.kprobes[0].args[5]", "limit")],
 head() + "  kprobes:\n  - call: sys_mmap\n    args:\n" + "".join(f"    - index: {i}\n      type: int\n" for i in range(5)) + "    - @@index: 5\n      type: int\n"),
("matchargs-index-unknown", "matchArgs index not among args", [("spec.kprobes[0].selectors[0].matchArgs[0].index", "index-out-of-range")],
 kp_sel("    - matchArgs:\n      - index: @@3\n        operator: Equal\n        values: [\"1\"]\n")),
("operator-unknown", "misspelt operator", [("spec.kprobes[0].selectors[0].matchArgs[0].operator", "unknown-operator")],
 kp_sel("    - matchArgs:\n      - index: 0\n        operator: @@\"Equals\"\n        values: [\"1\"]\n")),
("operator-prefix-on-int", "Prefix on an integer", [("spec.kprobes[0].selectors[0].matchArgs[0].operator", "operator-not-allowed")],
 kp_sel("    - matchArgs:\n      - index: 0\n        operator: @@Prefix\n        values: [\"1\"]\n")),
("operator-gt-on-file", "GT on a file", [("spec.kprobes[0].selectors[0].matchArgs[0].operator", "operator-not-allowed")],
 kp_sel("    - matchArgs:\n      - index: 1\n        operator: @@GT\n        values: [\"1\"]\n")),
("equal-int-not-number", "integer Equal with a word", [("spec.kprobes[0].selectors[0].matchArgs[0].values[0]", "invalid-value")],
 kp_sel("    - matchArgs:\n      - index: 0\n        operator: Equal\n        values:\n        - @@\"abc\"\n")),
("inrange-malformed", "InRange needs min:max", [("spec.kprobes[0].selectors[0].matchArgs[0].values[0]", "invalid-value")],
 kp_sel("    - matchArgs:\n      - index: 0\n        operator: InRange\n        values:\n        - @@\"10-20\"\n")),
("mask-too-many-values", "five values for Mask, limit four", [("spec.kprobes[0].selectors[0].matchArgs[0].values[4]", "limit")],
 kp_sel("    - matchArgs:\n      - index: 0\n        operator: Mask\n        values:\n        - \"1\"\n        - \"2\"\n        - \"4\"\n        - \"8\"\n        - @@\"16\"\n")),
("prefix-too-long", "Prefix longer than 256", [("spec.kprobes[0].selectors[0].matchArgs[0].values[0]", "limit")],
 kp_sel("    - matchArgs:\n      - index: 1\n        operator: Prefix\n        values:\n        - @@\"/" + "a" * 300 + "\"\n")),
("saddr-bad-cidr", "SAddr with prefix length 33", [("spec.kprobes[0].selectors[0].matchArgs[0].values[0]", "invalid-value")],
 head() + "  kprobes:\n  - call: tcp_connect\n    syscall: false\n    args:\n    - index: 0\n      type: sock\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: SAddr\n        values:\n        - @@\"10.0.0.0/33\"\n"),
("dport-out-of-range", "port 70000", [("spec.kprobes[0].selectors[0].matchArgs[0].values[1]", "invalid-value")],
 head() + "  kprobes:\n  - call: tcp_connect\n    syscall: false\n    args:\n    - index: 0\n      type: sock\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: DPort\n        values:\n        - \"443\"\n        - @@\"70000\"\n"),
("filetype-bad-value", "FileType value unknown", [("spec.kprobes[0].selectors[0].matchArgs[0].values[0]", "invalid-value")],
 kp_sel("    - matchArgs:\n      - index: 1\n        operator: FileType\n        values:\n        - @@\"socketx\"\n")),
("matchargs-position-past-args", "matchArgs args position past the args list", [("spec.kprobes[0].selectors[0].matchArgs[0].args[0]", "index-out-of-range")],
 kp_sel("    - matchArgs:\n      - args:\n        - @@2\n        operator: Prefix\n        values: [\"/etc\"]\n")),
("too-many-selectors", "six selectors, limit five", [("spec.kprobes[0].selectors[5]", "limit")],
 kp_sel("".join("    - matchPIDs:\n      - operator: In\n        values: [1]\n" for _ in range(5)) + "    - @@matchPIDs:\n      - operator: In\n        values: [1]\n")),
("too-many-actions", "four actions, limit three", [("spec.kprobes[0].selectors[0].matchActions[3]", "limit")],
 kp_sel("    - matchActions:\n      - action: Post\n      - action: NoPost\n      - action: Sigkill\n      - @@action: Post\n")),
("action-unknown", "action Kill does not exist", [("spec.kprobes[0].selectors[0].matchActions[0].action", "unknown-action")],
 kp_sel("    - matchActions:\n      - action: @@Kill\n")),
("action-followfd-removed", "FollowFD was removed from Tetragon", [("spec.kprobes[0].selectors[0].matchActions[0].action", "unknown-action")],
 kp_sel("    - matchActions:\n      - action: @@FollowFD\n")),
("signal-without-argsig", "Signal needs argSig", [("spec.kprobes[0].selectors[0].matchActions[0].argSig", "missing-field")],
 kp_sel("    - matchActions:\n      - @@action: Signal\n")),
("override-on-tracepoint", "Override is not possible on a tracepoint", [("spec.tracepoints[0].selectors[0].matchActions[0].action", "action-not-allowed")],
 head() + "  tracepoints:\n  - subsystem: syscalls\n    event: sys_enter_openat\n    selectors:\n    - matchActions:\n      - action: @@Override\n        argError: -1\n"),
("override-on-fentry", "enforcement is not supported for fentry", [("spec.fentries[0].selectors[0].matchActions[0].action", "action-not-allowed")],
 head() + "  fentries:\n  - call: security_file_open\n    syscall: false\n    selectors:\n    - matchActions:\n      - action: @@Override\n        argError: -1\n"),
("set-on-kprobe", "Set is for USDT only", [("spec.kprobes[0].selectors[0].matchActions[0].action", "action-not-allowed")],
 kp_sel("    - matchActions:\n      - action: @@Set\n        argIndex: 0\n        argValue: 1\n")),
("ratelimit-bad", "rateLimit unit unknown", [("spec.kprobes[0].selectors[0].matchActions[0].rateLimit", "invalid-value")],
 kp_sel("    - matchActions:\n      - action: Post\n        rateLimit: @@\"5x\"\n")),
("matchpids-bad-operator", "matchPIDs accepts In/NotIn only", [("spec.kprobes[0].selectors[0].matchPIDs[0].operator", "operator-not-allowed")],
 kp_sel("    - matchPIDs:\n      - operator: @@Equal\n        values: [1]\n")),
("matchpids-bad-value", "PID is not a number", [("spec.kprobes[0].selectors[0].matchPIDs[0].values[0]", "invalid-value")],
 kp_sel("    - matchPIDs:\n      - operator: In\n        values:\n        - @@init\n")),
("matchbinaries-two", "matchBinaries allows one entry", [("spec.kprobes[0].selectors[0].matchBinaries[1]", "limit")],
 kp_sel("    - matchBinaries:\n      - operator: In\n        values: [\"/bin/sh\"]\n      - @@operator: NotIn\n        values: [\"/bin/ls\"]\n")),
("matchnamespaces-unknown", "namespace Foo", [("spec.kprobes[0].selectors[0].matchNamespaces[0].namespace", "invalid-value")],
 kp_sel("    - matchNamespaces:\n      - namespace: @@Foo\n        operator: In\n        values: [host_ns]\n")),
("matchcapabilities-unknown", "capability CAP_FOO", [("spec.kprobes[0].selectors[0].matchCapabilities[0].values[0]", "invalid-value")],
 kp_sel("    - matchCapabilities:\n      - type: Effective\n        operator: In\n        values:\n        - @@CAP_FOO\n")),
("macro-unknown", "macro reference does not resolve", [("spec.kprobes[0].selectors[0].macros[0]", "unknown-macro")],
 kp_sel("    - macros:\n      - @@nosuchmacro\n")),
("macro-conflict", "selector and macro both set matchArgs", [("spec.kprobes[0].selectors[0].macros[0]", "macro-conflict")],
 head() + "  selectorsMacros:\n    etc:\n      matchArgs:\n      - index: 1\n        operator: Prefix\n        values: [\"/etc\"]\n  kprobes:\n  - call: fd_install\n    syscall: false\n    args:\n    - index: 1\n      type: file\n    selectors:\n    - macros:\n      - @@etc\n      matchArgs:\n      - index: 1\n        operator: Prefix\n        values: [\"/tmp\"]\n"),
("list-unknown", "call names a list that is not defined", [("spec.kprobes[0].call", "unknown-list")],
 head() + "  kprobes:\n  - call: @@\"list:nolist\"\n"),
("list-bad-type", "list type functions", [("spec.lists[0].type", "invalid-value")],
 head() + "  lists:\n  - name: l\n    type: @@functions\n    values: [sys_dup]\n"),
("list-ftrace-no-pattern", "generated_ftrace needs pattern", [("spec.lists[0].pattern", "missing-field")],
 head() + "  lists:\n  - @@name: l\n    type: generated_ftrace\n"),
("list-duplicate-name", "two lists with one name", [("spec.lists[1].name", "duplicate")],
 head() + "  lists:\n  - name: l\n    type: syscalls\n    values: [sys_dup]\n  - name: @@l\n    type: syscalls\n    values: [sys_dup2]\n"),
("uprobe-symbols-and-offsets", "symbols and offsets are exclusive", [("spec.uprobes[0].offsets", "conflict")],
 head() + "  uprobes:\n  - path: /bin/bash\n    symbols: [readline]\n    @@offsets: [16]\n"),
("uprobe-bad-digest", "md5 is not a digest kind", [("spec.uprobes[0].binaryDigests[0]", "invalid-value")],
 head() + "  uprobes:\n  - path: /bin/bash\n    symbols: [readline]\n    binaryDigests:\n    - @@\"md5:0123\"\n"),
("return-without-returnarg", "return needs returnArg", [("spec.kprobes[0].returnArg", "missing-field")],
 head() + "  kprobes:\n  - @@call: fd_install\n    syscall: false\n    return: true\n"),
("maxdata-with-returncopy", "maxData and returnCopy are exclusive", [("spec.kprobes[0].args[0].maxData", "conflict")],
 head() + "  kprobes:\n  - call: sys_read\n    args:\n    - index: 1\n      type: char_buf\n      returnCopy: true\n      @@maxData: true\n"),
("sizeargindex-zero", "sizeArgIndex is 1-based", [("spec.kprobes[0].args[0].sizeArgIndex", "invalid-value")],
 head() + "  kprobes:\n  - call: sys_write\n    args:\n    - index: 1\n      type: char_buf\n      sizeArgIndex: @@0\n"),
("returnargaction-bad", "returnArgAction only TrackSock/UntrackSock", [("spec.kprobes[0].returnArgAction", "invalid-value")],
 head() + "  kprobes:\n  - call: sk_alloc\n    syscall: false\n    return: true\n    returnArg:\n      index: 0\n      type: sock\n    returnArgAction: @@Sigkill\n"),
("namespaced-hostselector", "TracingPolicyNamespaced cannot select hosts", [("spec.hostSelector", "conflict")],
 head("TracingPolicyNamespaced") + "  @@hostSelector: {}\n  kprobes:\n  - call: fd_install\n    syscall: false\n"),
("duplicate-key", "call given twice", [("spec.kprobes[0].call", "duplicate-key")],
 head() + "  kprobes:\n  - call: fd_install\n    @@call: fd_install\n    syscall: false\n"),
("option-policy-mode-bad", "policy-mode audit", [("spec.options[0].value", "invalid-value")],
 head() + "  options:\n  - name: policy-mode\n    value: @@audit\n"),
("option-unknown", "unknown option", [("spec.options[0].name", "unknown-option")],
 head() + "  options:\n  - name: @@turbo-mode\n    value: \"true\"\n"),
("message-too-long", "message over 256 chars", [("spec.kprobes[0].message", "limit")],
 head() + "  kprobes:\n  - call: fd_install\n    syscall: false\n    message: @@\"" + "m" * 300 + "\"\n"),
("too-many-tags", "seventeen tags", [("spec.kprobes[0].tags[16]", "limit")],
 head() + "  kprobes:\n  - call: fd_install\n    syscall: false\n    tags:\n" + "".join(f"    - t{i}\n" for i in range(16)) + "    - @@t16\n"),
("tracepoint-missing-event", "tracepoint without event", [("spec.tracepoints[0].event", "missing-field")],
 head() + "  tracepoints:\n  - @@subsystem: sched\n"),
("two-enforcers", "only one enforcer allowed", [("spec.enforcers[1]", "limit")],
 head() + "  enforcers:\n  - calls: [sys_dup]\n  - @@calls: [sys_dup2]\n"),
("notifyenforcer-without-enforcer", "NotifyEnforcer needs spec.enforcers", [("spec.tracepoints[0].selectors[0].matchActions[0].action", "missing-enforcer")],
 head() + "  tracepoints:\n  - subsystem: raw_syscalls\n    event: sys_enter\n    selectors:\n    - matchActions:\n      - action: @@NotifyEnforcer\n        argError: -1\n"),
("resolve-too-deep", "resolve deeper than 10", [("spec.kprobes[0].args[0].resolve", "limit")],
 head() + "  kprobes:\n  - call: fd_install\n    syscall: false\n    args:\n    - index: 1\n      type: string\n      resolve: @@\"a.b.c.d.e.f.g.h.i.j.k\"\n"),
("two-errors", "unknown operator and unknown action in one file: both reported",
 [("spec.kprobes[0].selectors[0].matchArgs[0].operator", "unknown-operator"), ("spec.kprobes[0].selectors[0].matchActions[0].action", "unknown-action")],
 kp_sel("    - matchArgs:\n      - index: 0\n        operator: @@Bigger\n        values: [\"1\"]\n      matchActions:\n      - action: @@Explode\n")),
("matchdata-without-data", "matchData index with no data entries", [("spec.kprobes[0].selectors[0].matchData[0].index", "index-out-of-range")],
 kp_sel("    - matchData:\n      - index: @@0\n        operator: Equal\n        values: [\"1\"]\n")),
("usdt-too-many-args", "six USDT args", [("spec.usdts[0].args[5]", "limit")],
 head() + "  usdts:\n  - path: /usr/bin/x\n    provider: p\n    name: n\n    args:\n" + "".join(f"    - index: {i}\n      type: int32\n" for i in range(5)) + "    - @@index: 5\n      type: int32\n"),
("values-not-list", "values given as a scalar", [("spec.kprobes[0].selectors[0].matchArgs[0].values", "wrong-type")],
 kp_sel("    - matchArgs:\n      - index: 0\n        operator: Equal\n        values: @@\"1\"\n")),
]

os.makedirs(OUT, exist_ok=True)
for name, desc, expects, body in cases:
    parts = body.split("@@")
    assert len(parts) == len(expects) + 1, name
    text = ""
    lines = []
    header_lines = [f"# expect: {p} LINE{i}:COL{i} {r}" for i, (p, r) in enumerate(expects)] + [f"# {desc}"]
    offset = len(header_lines)
    text = ""
    for i, part in enumerate(parts[:-1]):
        text += part
        line = text.count("\n") + 1 + offset
        col = len(text) - (text.rfind("\n") + 1) + 1
        header_lines[i] = header_lines[i].replace(f"LINE{i}:COL{i}", f"{line}:{col}")
    text += parts[-1]
    with open(os.path.join(OUT, name + ".yaml"), "w") as f:
        f.write("\n".join(header_lines) + "\n" + text)
print(len(cases))
