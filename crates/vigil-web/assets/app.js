// The flight recorder's explorer. Everything shown comes from the workload (binaries,
// arguments, pod names): it is only ever set as text, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const FOLLOW_EVERY_MS = 10000;

const state = { first: 0, last: 0, view: null, selected: null, autoSelected: false };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, String(v));
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function time(ms) {
  return ms === null || ms === undefined ? "?" : new Date(ms).toISOString().replace("T", " ").replace("Z", "");
}

function shortAction(a) {
  return (a || "").replace("KPROBE_ACTION_", "");
}

function windowMs() {
  const v = $("window").value;
  return v === "all" ? null : Number(v);
}

function query() {
  const p = [];
  const slider = $("slider");
  const follow = $("follow").checked;
  // Following: up to now (the newest events keep coming); else the slider's time.
  const until = follow || Number(slider.max) === 0 ? Date.now() : Number(slider.value);
  const span = windowMs();
  if (span !== null) p.push("since=" + (until - span));
  if (!follow) p.push("until=" + until);
  const q = $("search").value.trim();
  if (q) p.push("q=" + encodeURIComponent(q));
  return p.join("&");
}

async function getJson(url) {
  const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  const text = await r.text();
  let body = null;
  try { body = JSON.parse(text); } catch (_) { /* a plain-text error */ }
  if (!r.ok) throw new Error((body && body.error) || text.trim() || r.status + " " + r.statusText);
  return body;
}

async function load() {
  try {
    const view = await getJson("/api/view?" + query());
    state.view = view;
    render(view);
  } catch (e) {
    const s = $("status");
    s.className = "error";
    s.textContent = "error: " + e.message;
  }
}

function render(view) {
  const status = $("status");
  status.className = "";
  if (view.empty) {
    status.textContent = "nothing recorded yet";
    $("tree").replaceChildren();
    $("enforcements").replaceChildren();
    return;
  }
  const slider = $("slider");
  slider.min = String(view.first_ms);
  slider.max = String(view.last_ms);
  if ($("follow").checked) slider.value = String(view.last_ms);
  $("until").textContent = time(Number(slider.value));
  const n = view.processes.length;
  status.textContent =
    n + " processes, " + view.enforcements.length + " enforcement events, " +
    time(view.since_ms) + " – " + time(view.until_ms) + " (" + view.scanned_events + " events read" +
    (view.truncated ? "; cut at the page's limits: narrow the window or search" : "") + ")";
  renderTree(view);
  renderEnforcements(view);
  if (!state.autoSelected && view.enforcements.length > 0) {
    state.autoSelected = true;
    select(view.enforcements[view.enforcements.length - 1].exec_id);
  } else if (state.selected) {
    mark(state.selected);
  }
}

function actionsByProcess(view) {
  const m = new Map();
  for (const x of view.enforcements) {
    if (!m.has(x.exec_id)) m.set(x.exec_id, new Set());
    m.get(x.exec_id).add(shortAction(x.action));
  }
  return m;
}

function renderTree(view) {
  const byId = new Map(view.processes.map((p) => [p.exec_id, p]));
  const children = new Map();
  const roots = [];
  for (const p of view.processes) {
    if (p.parent_exec_id && p.parent_exec_id !== p.exec_id && byId.has(p.parent_exec_id)) {
      if (!children.has(p.parent_exec_id)) children.set(p.parent_exec_id, []);
      children.get(p.parent_exec_id).push(p);
    } else {
      roots.push(p);
    }
  }
  const order = (a, b) => (a.start_ms || 0) - (b.start_ms || 0) || (a.pid || 0) - (b.pid || 0);
  const actions = actionsByProcess(view);
  const drawn = new Set();
  function item(p) {
    drawn.add(p.exec_id);
    const row = el("div", {
      class: "proc" + (p.exit_ms !== null ? " exited" : "") + (p.match ? " match" : ""),
      "data-exec-id": p.exec_id, "data-pid": p.pid, "data-binary": p.binary,
      title: p.binary + " " + p.arguments,
    },
      el("span", { class: "binary" }, p.binary || "?"),
      el("span", { class: "pid" }, "pid " + (p.pid ?? "?")),
      p.arguments ? el("span", { class: "args" }, p.arguments) : null,
      p.pod ? el("span", { class: "pod" }, "pod " + p.pod) : null,
      p.events ? el("span", { class: "count" }, p.events + " events") : null);
    for (const a of actions.get(p.exec_id) || []) {
      row.append(el("span", { class: "badge enforced", "data-action": a }, a + " · " + p.policies.join(", ")));
    }
    if (p.exit_signal) row.append(el("span", { class: "badge killed" }, "exit " + p.exit_signal));
    row.addEventListener("click", () => select(p.exec_id));
    const li = el("li", {}, row);
    const kids = (children.get(p.exec_id) || []).filter((c) => !drawn.has(c.exec_id)).sort(order);
    if (kids.length) li.append(el("ul", {}, ...kids.map(item)));
    return li;
  }
  $("tree").replaceChildren(...roots.sort(order).map(item));
}

function renderEnforcements(view) {
  const list = $("enforcements");
  if (!view.enforcements.length) {
    list.replaceChildren(el("li", { class: "hint" }, "none in this window"));
    return;
  }
  list.replaceChildren(...view.enforcements.slice().reverse().map((x) =>
    el("li", { "data-exec-id": x.exec_id, "data-pid": x.pid, "data-action": x.action, "data-policy": x.policy,
               onclick: () => select(x.exec_id) },
      el("span", { class: "action" }, shortAction(x.action)), " ",
      el("span", { class: "policy" }, x.policy), " ",
      el("span", { class: "binary" }, x.binary), " ",
      el("span", { class: "pid" }, "pid " + x.pid), " ",
      el("span", { class: "hook" }, x.hook), " ",
      el("span", { class: "count" }, time(x.time_ms)))));
}

function mark(execId) {
  for (const e of document.querySelectorAll(".proc.selected")) e.classList.remove("selected");
  for (const e of document.querySelectorAll(".proc")) {
    if (e.getAttribute("data-exec-id") === execId) e.classList.add("selected");
  }
}

function payloadOf(ev) {
  for (const [k, v] of Object.entries(ev || {})) {
    if (k.startsWith("process_")) return [k, v];
  }
  return ["?", {}];
}

async function select(execId) {
  state.selected = execId;
  mark(execId);
  const box = $("details");
  try {
    const d = await getJson("/api/process?exec_id=" + encodeURIComponent(execId));
    const p = d.process;
    const rows = [["binary", p.binary], ["arguments", p.arguments], ["pid", p.pid], ["exec id", p.exec_id],
      ["parent exec id", p.parent_exec_id], ["pod", p.pod || "–"], ["started", time(p.start_ms)],
      ["exited", p.exit_ms === null ? "running" : time(p.exit_ms)], ["children", d.children]];
    const dl = el("dl", { "data-exec-id": p.exec_id });
    for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", {}, v ?? "?"));
    const events = el("ul", { class: "events" });
    for (const ev of d.events) {
      const [kind, body] = payloadOf(ev);
      const enforced = ["KPROBE_ACTION_SIGKILL", "KPROBE_ACTION_OVERRIDE", "KPROBE_ACTION_SIGNAL",
        "KPROBE_ACTION_NOTIFYENFORCER"].includes(body.action);
      const summary = [kind, ev.time || "", body.policy_name || "", body.function_name || "",
        body.action || "", body.signal ? "signal " + body.signal : ""].filter(Boolean).join(" ");
      events.append(el("li", { class: enforced ? "enforcement" : "", "data-kind": kind },
        el("div", {}, summary),
        el("details", {}, el("summary", {}, "JSON"), el("pre", {}, JSON.stringify(ev, null, 1)))));
    }
    box.replaceChildren(dl, el("h2", {}, d.events.length + " events" + (d.truncated ? " (first ones)" : "")), events);
  } catch (e) {
    box.replaceChildren(el("p", { class: "hint" }, "error: " + e.message));
  }
}

$("controls").addEventListener("submit", (e) => { e.preventDefault(); load(); });
$("window").addEventListener("change", load);
$("slider").addEventListener("input", () => {
  $("follow").checked = false;
  $("until").textContent = time(Number($("slider").value));
});
$("slider").addEventListener("change", load);
$("follow").addEventListener("change", load);
setInterval(() => { if ($("follow").checked) load(); }, FOLLOW_EVERY_MS);
load();
