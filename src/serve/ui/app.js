// Phased dashboard: one page over the API and its event streams. No framework and no
// build step: the DOM is built with `h()` (text is always set as text, never as HTML),
// the views are `#/`, `#/runs/ID` and `#/deploy[/PIPELINE]`, and everything live comes
// from Server-Sent Events, resumed with Last-Event-ID after a reconnect.
"use strict";

const PAGE_SIZE = 50;
const LOG_LIMIT = 512 * 1024;
const ROLES = { read: 1, deploy: 2, admin: 3 };
const ENDS = new Set(["run_succeeded", "run_failed", "run_interrupted"]);

const app = {
  me: null,        // {name, role}
  lastSeq: 0,      // the newest event this page has seen (of any run)
  events: null,    // the EventSource of every run
  view: null,      // the view on screen: {onEvent(e), close()}
  retry: null,
};

// ---------------------------------------------------------------- helpers

function h(tag, attrs, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const main = () => document.getElementById("main");
const canDeploy = () => app.me && ROLES[app.me.role] >= ROLES.deploy;

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: {}, ...options };
  if (options.json !== undefined) {
    init.method = init.method || "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (response.status === 401 && path !== "/session") {
    signedOut();
    throw new ApiError(401, body);
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function duration(ms) {
  if (ms === null || ms === undefined || !isFinite(ms) || ms < 0) return "—";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

const clock = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
function when(iso) {
  if (!iso) return "—";
  return h("time", { datetime: iso, title: iso }, clock.format(new Date(iso)));
}

function statusBadge(status) {
  return h("span", { class: `status s-${status}`, "data-status": status }, status);
}

function progressBar(value, label) {
  return h("span", { class: "progress" },
    h("progress", { max: 100, value, "aria-label": label }),
    h("span", { class: "pct" }, `${value}%`));
}

function setProgress(container, value) {
  const bar = container.querySelector("progress");
  if (bar) bar.value = value;
  const pct = container.querySelector(".pct");
  if (pct) pct.textContent = `${value}%`;
}

// Durations of what is still running tick here, from the page's clock only.
setInterval(() => {
  for (const el of document.querySelectorAll("[data-since]")) {
    el.textContent = duration(Date.now() - Date.parse(el.dataset.since));
  }
  for (const el of document.querySelectorAll("[data-until]")) {
    el.textContent = `${duration(Math.max(0, Date.parse(el.dataset.until) - Date.now()))} left`;
  }
}, 1000);

function runDuration(run) {
  if (run.finished_at) return h("span", { class: "num" }, duration(Date.parse(run.finished_at) - Date.parse(run.created_at)));
  if (run.status === "running" || run.status === "queued") {
    return h("span", { class: "num", "data-since": run.created_at }, duration(Date.now() - Date.parse(run.created_at)));
  }
  return h("span", { class: "num" }, "—");
}

// What a running run has left, counting down on the page's clock from when it was said.
function eta(run) {
  if (run.eta_seconds === null || run.eta_seconds === undefined || run.status !== "running") return "—";
  const until = (run.eta_at ? Date.parse(run.eta_at) : Date.now()) + run.eta_seconds * 1000;
  return h("span", { "data-until": new Date(until).toISOString() }, `${duration(until - Date.now())} left`);
}

// A run's state after an event (the run's own fields only).
function applyToRun(run, e) {
  run.phase = e.phase;
  run.phase_progress = e.progress;
  if (e.eta_seconds !== undefined) { run.eta_seconds = e.eta_seconds; run.eta_at = e.ts; }
  switch (e.event) {
    case "run_queued": run.status = "queued"; break;
    case "run_started": case "run_resumed": run.status = "running"; run.finished_at = null; break;
    case "run_succeeded": run.status = "succeeded"; run.finished_at = e.ts; break;
    case "run_failed": run.status = "failed"; run.finished_at = e.ts; run.error = e.error; break;
    case "run_interrupted": run.status = /cancel|supersed/.test(e.metadata.reason || "") ? "cancelled" : "interrupted"; break;
    default: if (run.status === "queued") run.status = "running";
  }
}

// ---------------------------------------------------------------- the live stream

function setLive(on, text) {
  const el = document.getElementById("live");
  el.className = `live ${on ? "on" : "off"}`;
  el.textContent = text;
}

// One stream of every run's events for the whole page; EventSource reconnects by itself
// after a network error and sends Last-Event-ID, so nothing is missed or repeated. If
// the server answered with an error instead, it is opened again after the last event.
function openEvents() {
  if (app.events) app.events.close();
  const source = new EventSource(`/api/v1/events?after=${app.lastSeq}`);
  app.events = source;
  source.onopen = () => setLive(true, "Live");
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      setLive(false, "Reconnecting…");
      clearTimeout(app.retry);
      app.retry = setTimeout(async () => {
        try { await api("/api/v1/session"); openEvents(); } catch { app.retry = setTimeout(openEvents, 2000); }
      }, 1000);
    } else {
      setLive(false, "Reconnecting…");
    }
  };
  const handle = (message) => {
    const e = JSON.parse(message.data);
    if (e.seq <= app.lastSeq) return;
    app.lastSeq = e.seq;
    if (app.view && app.view.onEvent) app.view.onEvent(e);
  };
  for (const name of ["run_queued", "run_started", "run_resumed", "node_started", "node_progress", "node_succeeded",
    "node_skipped", "node_retrying", "node_failed", "run_succeeded", "run_failed", "run_interrupted"]) {
    source.addEventListener(name, handle);
  }
  source.onmessage = handle;
}

// ---------------------------------------------------------------- sign-in

function signedOut() {
  app.me = null;
  if (app.events) { app.events.close(); app.events = null; }
  document.getElementById("who").textContent = "";
  document.getElementById("sign-out").hidden = true;
  document.getElementById("nav-deploy").hidden = true;
  setLive(false, "");
  showSignIn();
}

function showSignIn(problem) {
  if (app.view && app.view.close) app.view.close();
  app.view = null;
  const error = h("p", { class: "error", id: "signin-error", role: "alert" }, problem || "");
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "current-password", required: true, "aria-describedby": "token-hint signin-error" });
  const form = h("form", { class: "panel signin", id: "signin", novalidate: true },
    h("h1", {}, "Sign in to Phased"),
    h("div", { class: "field" },
      h("label", { for: "token" }, "API token"),
      input,
      h("span", { class: "hint", id: "token-hint" }, "Made with ", h("code", {}, "phased token create NAME"), ". It is kept by the server as a session cookie, not by this page.")),
    error,
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      app.me = await api("/session", { json: { token: input.value } });
      input.value = "";
      await start();
    } catch (e) {
      error.textContent = e.status === 401 ? "That token is not valid (or it was revoked)." : `Could not sign in: ${e.message}`;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  });
  main().replaceChildren(form);
  document.title = "Sign in · Phased";
  input.focus();
}

async function signOut() {
  try { await fetch("/session", { method: "DELETE", credentials: "same-origin" }); } catch { /* signed out below anyway */ }
  signedOut();
}

// ---------------------------------------------------------------- the runs

function runsView(before) {
  const rows = new Map(); // id -> {run, tr}
  let more = false;
  const tbody = h("tbody", { id: "runs-body" });
  const pager = h("div", { class: "pager" });
  const filter = h("select", { id: "status-filter", "aria-label": "Show runs with status" },
    h("option", { value: "" }, "Every status"),
    ["running", "queued", "succeeded", "failed", "interrupted", "cancelled"].map((s) => h("option", { value: s }, s)));
  const table = h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Deployments" },
    h("table", { class: "cards", id: "runs" },
      h("caption", { class: "sr-only" }, "Deployments, newest first"),
      h("thead", {}, h("tr", {}, ["Target", "Type", "Status", "Phase", "Progress", "Started", "Duration", "ETA"].map((t) => h("th", { scope: "col" }, t)))),
      tbody));
  const empty = h("p", { class: "empty", hidden: true }, "No deployments yet. ", canDeploy() ? h("a", { href: "#/deploy" }, "Start one") : null, canDeploy() ? " or run " : "Run ", h("code", {}, "phased run"), ".");
  const toolbar = h("div", { class: "toolbar" },
    h("h1", {}, "Deployments"), h("span", { class: "spacer" }), filter,
    canDeploy() ? h("a", { class: "button", href: "#/deploy", id: "deploy-link" }, "Deploy") : null);
  main().replaceChildren(toolbar, table, empty, pager);

  function render(run) {
    const label = run.target || run.id.slice(0, 8);
    const tr = h("tr", { "data-id": run.id, "data-status": run.status },
      h("td", { "data-label": "Target" }, h("a", { href: `#/runs/${encodeURIComponent(run.id)}` }, label)),
      h("td", { "data-label": "Type" }, run.pipeline),
      h("td", { "data-label": "Status" }, statusBadge(run.status)),
      h("td", { "data-label": "Phase", class: "mono" }, run.phase),
      h("td", { "data-label": "Progress" }, progressBar(run.phase_progress, `Progress of ${label}`)),
      h("td", { "data-label": "Started" }, when(run.created_at)),
      h("td", { "data-label": "Duration" }, runDuration(run)),
      h("td", { "data-label": "ETA", class: "num" }, eta(run)));
    return tr;
  }

  function put(run, atTop) {
    const tr = render(run);
    const old = rows.get(run.id);
    if (old) old.tr.replaceWith(tr);
    else if (atTop) tbody.prepend(tr);
    else tbody.append(tr);
    rows.set(run.id, { run, tr });
    empty.hidden = rows.size > 0;
  }

  function showPager() {
    pager.replaceChildren(...[
      before ? h("a", { href: "#/", class: "button quiet", id: "newest" }, "← Newest") : null,
      more ? h("a", { class: "button quiet", id: "older", href: `#/?before=${encodeURIComponent(tbody.lastElementChild ? tbody.lastElementChild.dataset.id : "")}` }, "Older →") : null,
    ].filter(Boolean));
  }

  const status = new URLSearchParams(location.hash.split("?")[1] || "").get("status") || "";
  filter.value = status;
  filter.addEventListener("change", () => { location.hash = filter.value ? `#/?status=${filter.value}` : "#/"; });

  const pending = new Set();
  async function fetchRun(id) {
    if (pending.has(id)) return;
    pending.add(id);
    try {
      const run = await api(`/api/v1/runs/${encodeURIComponent(id)}`);
      if (status && run.status !== status) return;
      put(run, !rows.has(id));
      // The page keeps its length: the oldest row (the table's last) goes.
      while (rows.size > PAGE_SIZE) {
        const last = tbody.lastElementChild;
        rows.delete(last.dataset.id);
        last.remove();
        more = true;
      }
      showPager();
    } catch { /* gone, or signed out */ } finally { pending.delete(id); }
  }

  const query = new URLSearchParams({ limit: PAGE_SIZE });
  if (before) query.set("before", before);
  if (status) query.set("status", status);
  const loaded = api(`/api/v1/runs?${query}`).then((page) => {
    for (const run of page.runs) put(run, false);
    more = page.more;
    empty.hidden = rows.size > 0;
    showPager();
    return page;
  });

  return {
    loaded,
    onEvent(e) {
      const row = rows.get(e.deployment);
      if (row) {
        applyToRun(row.run, e);
        if (status && row.run.status !== status) { row.tr.remove(); rows.delete(e.deployment); return; }
        if (e.event === "node_progress" || e.event === "node_started" || e.event === "node_succeeded") {
          // The row's cells, in place: no new element for each event.
          row.tr.dataset.status = row.run.status;
          setProgress(row.tr, row.run.phase_progress);
          row.tr.children[3].textContent = row.run.phase;
          row.tr.children[2].replaceChildren(statusBadge(row.run.status));
          row.tr.children[7].replaceChildren(eta(row.run));
        } else {
          put(row.run, false);
        }
        if (ENDS.has(e.event)) fetchRun(e.deployment);
      } else if (!before) {
        fetchRun(e.deployment);
      }
    },
  };
}

// ---------------------------------------------------------------- one run

const NODE_W = 168, NODE_H = 42, GAP_X = 44, GAP_Y = 14;

// Left to right by longest path; within a column, in plan order.
function layout(nodes) {
  const column = new Map();
  for (const n of nodes) {
    let c = 0;
    for (const a of n.after) if (column.has(a)) c = Math.max(c, column.get(a) + 1);
    column.set(n.id, c);
  }
  const rows = [];
  const at = new Map();
  for (const n of nodes) {
    const c = column.get(n.id);
    rows[c] = (rows[c] || 0) + 1;
    at.set(n.id, { x: 12 + c * (NODE_W + GAP_X), y: 12 + (rows[c] - 1) * (NODE_H + GAP_Y) });
  }
  const width = 24 + rows.length * (NODE_W + GAP_X) - GAP_X;
  const height = 24 + Math.max(1, ...rows.map((r) => r || 0)) * (NODE_H + GAP_Y) - GAP_Y;
  return { at, width, height };
}

function short(text, max) {
  return text.length > max ? `…${text.slice(text.length - max + 1)}` : text;
}

function drawGraph(graph, states, choose) {
  const { at, width, height } = layout(graph.nodes);
  const svg = h("svg:svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `The run's graph: ${graph.nodes.length} nodes, listed with their state in the table below` });
  const edges = h("svg:g", {});
  const boxes = h("svg:g", {});
  const groups = new Set(graph.nodes.map((n) => n.parent).filter(Boolean));
  const drawn = new Map();
  for (const n of graph.nodes) {
    const p = at.get(n.id);
    for (const a of n.after) {
      const q = at.get(a);
      if (!q) continue;
      const x1 = q.x + NODE_W, y1 = q.y + NODE_H / 2, x2 = p.x, y2 = p.y + NODE_H / 2;
      const mid = (x1 + x2) / 2;
      edges.append(h("svg:path", { class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` }));
    }
    const state = states.get(n.id) || "pending";
    const g = h("svg:g", { class: `node g-${state}${groups.has(n.id) ? " group" : ""}`, "data-node": n.id, transform: `translate(${p.x},${p.y})` },
      h("svg:title", {}, `${n.id} (${n.uses}): ${state}`),
      h("svg:rect", { width: NODE_W, height: NODE_H, rx: 6 }),
      h("svg:text", { x: 10, y: 17 }, short(n.id, 21)),
      h("svg:text", { x: 10, y: 33, class: "state" }, `${state} · ${short(n.uses, 14)}`));
    g.addEventListener("click", () => choose(n.id));
    boxes.append(g);
    drawn.set(n.id, g);
  }
  svg.append(edges, boxes);
  return {
    svg,
    set(id, state) {
      const g = drawn.get(id);
      if (!g) return;
      g.setAttribute("class", `node g-${state}${groups.has(id) ? " group" : ""}${g.classList.contains("chosen") ? " chosen" : ""}`);
      g.querySelector(".state").textContent = `${state} · ${short(graph.nodes.find((n) => n.id === id).uses, 14)}`;
      g.querySelector("title").textContent = `${id}: ${state}`;
    },
    choose(id) {
      for (const [k, g] of drawn) g.classList.toggle("chosen", k === id);
    },
  };
}

// Phases in order with how long each lasted, and the metadata each recorded.
function phases(run) {
  const out = [];
  for (const row of run.history || []) {
    const last = out[out.length - 1];
    if (last && last.phase === row.phase) {
      last.metadata = { ...last.metadata, ...row.metadata };
      continue;
    }
    if (last) last.end = row.at;
    out.push({ phase: row.phase, start: row.at, end: null, metadata: { ...row.metadata } });
  }
  const last = out[out.length - 1];
  if (last) last.end = run.finished_at || (run.status === "running" ? null : last.start);
  return out;
}

function runView(id) {
  const states = new Map();       // node -> state
  let run = null, graph = null, drawing = null, stream = null, follow = null, refetch = null;
  let chosen = null, closed = false;
  const seen = new Set();         // seqs shown in the event table
  const parts = {
    head: h("div", {}), alert: h("div", {}), graph: h("div", { class: "graph", id: "graph", tabindex: 0, role: "region", "aria-label": "Graph" }),
    nodes: h("tbody", { id: "nodes-body" }), timeline: h("ol", { class: "timeline", id: "timeline" }),
    log: h("pre", { class: "log", id: "log", tabindex: 0, "aria-live": "off", "aria-label": "Node log" }, "Choose a node to see its log."),
    logTitle: h("h2", { id: "log-title" }, "Log"),
    events: h("tbody", { id: "events-body" }),
    releases: h("section", { id: "releases" }),
  };
  main().replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← Deployments")),
    parts.head, parts.alert,
    h("h2", {}, "Graph"), parts.graph,
    h("h2", {}, "Nodes"),
    h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Nodes" }, h("table", { class: "cards", id: "nodes" },
      h("thead", {}, h("tr", {}, ["Node", "State", "Attempt", "Duration", "Log"].map((t) => h("th", { scope: "col" }, t)))),
      parts.nodes)),
    h("h2", {}, "Phases"), parts.timeline,
    parts.releases,
    parts.logTitle, parts.log,
    h("h2", {}, "Events"),
    h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Events" }, h("table", { id: "events" },
      h("thead", {}, h("tr", {}, ["#", "Time", "Event", "Node", "Phase", "Progress"].map((t) => h("th", { scope: "col" }, t)))),
      parts.events)));

  function nodeRow(n) {
    const state = states.get(n.node) || n.status;
    return h("tr", { "data-node": n.node, "data-state": state },
      h("td", { "data-label": "Node", class: "mono" }, n.node),
      h("td", { "data-label": "State" }, statusBadge(state)),
      h("td", { "data-label": "Attempt", class: "num" }, n.attempt || "—"),
      h("td", { "data-label": "Duration", class: "num" }, n.duration_ms !== null ? duration(n.duration_ms) : n.started_at && state === "running" ? h("span", { "data-since": n.started_at }, duration(Date.now() - Date.parse(n.started_at))) : "—"),
      h("td", { "data-label": "Log" }, h("button", { type: "button", class: "quiet", "aria-label": `Log of ${n.node}`, onclick: () => chooseNode(n.node) }, "Log")));
  }

  function renderHead() {
    const label = run.target || run.pipeline;
    document.title = `${label} · ${run.status} · Phased`;
    const buttons = [];
    if (canDeploy() && (run.status === "running" || run.status === "queued")) {
      buttons.push(h("button", { type: "button", class: "danger", id: "cancel", onclick: act("cancel") }, "Cancel"));
    }
    if (canDeploy() && ["failed", "interrupted", "cancelled"].includes(run.status)) {
      buttons.push(h("button", { type: "button", id: "resume", onclick: act("resume") }, "Resume"));
    }
    parts.head.replaceChildren(
      h("div", { class: "toolbar" }, h("h1", {}, label, " ", h("span", { class: "muted mono" }, run.id)), h("span", { class: "spacer" }), buttons),
      h("dl", { class: "summary", id: "summary" },
        h("div", {}, h("dt", {}, "Status"), h("dd", { id: "run-status" }, statusBadge(run.status))),
        h("div", {}, h("dt", {}, "Phase"), h("dd", { id: "run-phase", class: "mono" }, run.phase)),
        h("div", {}, h("dt", {}, "Progress"), h("dd", { id: "run-progress" }, progressBar(run.phase_progress, "Progress of this run"))),
        h("div", {}, h("dt", {}, "Type"), h("dd", {}, run.pipeline)),
        h("div", {}, h("dt", {}, "Started"), h("dd", {}, when(run.created_at))),
        h("div", {}, h("dt", {}, "Duration"), h("dd", {}, runDuration(run))),
        h("div", {}, h("dt", {}, "ETA"), h("dd", { id: "run-eta" }, eta(run))),
        h("div", {}, h("dt", {}, "Attempt"), h("dd", {}, run.attempt))));
    const failed = (run.nodes || []).find((n) => (states.get(n.node) || n.status) === "failed");
    if (run.status === "failed") {
      parts.alert.replaceChildren(h("section", { class: "alert", id: "failure", role: "alert" },
        h("h2", {}, failed ? `Failed at ${failed.node}` : "Failed"),
        h("pre", {}, run.error || (failed && failed.error) || "")));
    } else {
      parts.alert.replaceChildren();
    }
  }

  function act(what) {
    return async (ev) => {
      ev.target.disabled = true;
      try {
        await api(`/api/v1/runs/${encodeURIComponent(id)}/${what}`, { json: {} });
        if (what === "resume") openStream();
        scheduleRefetch();
      } catch (e) {
        parts.alert.replaceChildren(h("p", { class: "alert", role: "alert" }, `Could not ${what}: ${e.message}`));
        ev.target.disabled = false;
      }
    };
  }

  function renderTimeline() {
    const list = phases(run);
    const spans = list.map((p) => (p.end ? Date.parse(p.end) : Date.now()) - Date.parse(p.start));
    const longest = Math.max(1, ...spans);
    parts.timeline.replaceChildren(...list.map((p, i) => {
      const meta = Object.entries(p.metadata || {});
      return h("li", {},
        h("span", { class: "mono" }, p.phase),
        h("span", { class: "bar-track", "aria-hidden": "true" }, h("span", { class: "bar-fill", style: null, "data-w": Math.round((spans[i] / longest) * 100) })),
        h("span", { class: "num" }, p.end ? duration(spans[i]) : h("span", { "data-since": p.start }, duration(spans[i]))),
        meta.length ? h("dl", {}, meta.map(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "string" ? v : JSON.stringify(v))])) : null);
    }));
    // Widths through the CSSOM: the page's policy allows no inline style attributes.
    for (const fill of parts.timeline.querySelectorAll(".bar-fill")) fill.style.width = `${fill.dataset.w}%`;
  }

  let shownReleases = "";
  function renderReleases(list) {
    // Redrawn only when it changed: a button is not replaced under the pointer.
    const key = JSON.stringify(list) + canDeploy();
    if (key === shownReleases) return;
    shownReleases = key;
    if (!run.target || !list.length) { parts.releases.replaceChildren(); return; }
    const rows = list.map((r) => h("tr", { "data-release": r.id, "data-live": r.live ? "true" : "false" },
      h("td", { "data-label": "Live" }, r.live ? h("span", { class: "status s-succeeded" }, "live") : ""),
      h("td", { "data-label": "Run" }, h("a", { href: `#/runs/${encodeURIComponent(r.id)}`, class: "mono" }, r.id)),
      h("td", { "data-label": "Finished" }, when(r.finished_at)),
      h("td", { "data-label": "Deployed", class: "mono" }, r.rollback_of ? `rollback to ${r.rollback_of}` : [r.deployed.commit && `commit ${r.deployed.commit.slice(0, 12)}`, r.deployed.image, r.deployed.release].filter(Boolean).join(" · ") || "—"),
      h("td", { "data-label": "" }, canDeploy() && !r.live && !r.rollback_of
        ? h("button", { type: "button", class: "quiet", "data-rollback": r.id, "aria-label": `Roll back ${run.target} to ${r.id}`, onclick: rollbackTo(r.id) }, "Roll back to this")
        : "")));
    parts.releases.replaceChildren(
      h("h2", {}, `Releases of ${run.target}`),
      h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Releases" },
        h("table", { class: "cards", id: "releases-table" },
          h("thead", {}, h("tr", {}, ["Live", "Run", "Finished", "Deployed", "Action"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows))));
  }

  function rollbackTo(release) {
    return async (ev) => {
      ev.target.disabled = true;
      try {
        const started = await api(`/api/v1/targets/${encodeURIComponent(run.target)}/rollback`, { json: { to: release } });
        location.hash = `#/runs/${encodeURIComponent(started.id)}`;
      } catch (e) {
        parts.alert.replaceChildren(h("p", { class: "alert", role: "alert" }, `Could not roll back: ${e.message}`));
        ev.target.disabled = false;
      }
    };
  }

  function renderNodes() {
    parts.nodes.replaceChildren(...(run.nodes || []).map(nodeRow));
  }

  async function load() {
    const [detail, g] = await Promise.all([
      api(`/api/v1/runs/${encodeURIComponent(id)}`),
      graph ? Promise.resolve(graph) : api(`/api/v1/runs/${encodeURIComponent(id)}/graph`),
    ]);
    if (closed) return;
    run = detail;
    for (const n of run.nodes) if (!states.has(n.node) || !seenAfter(n.node)) states.set(n.node, n.status);
    renderHead();
    renderNodes();
    renderTimeline();
    if (run.target) {
      api(`/api/v1/targets/${encodeURIComponent(run.target)}/releases`).then((r) => { if (!closed) renderReleases(r.releases); }).catch(() => {});
    }
    if (!graph || g.nodes.length !== graph.nodes.length) {
      graph = g;
      drawing = drawGraph(graph, states, chooseNode);
      parts.graph.replaceChildren(drawing.svg);
      if (chosen) drawing.choose(chosen);
    } else {
      for (const [node, state] of states) drawing.set(node, state);
    }
  }

  // Node states set by an event newer than the last fetch are kept over the fetched ones.
  const eventAt = new Map();
  let fetchedAt = 0;
  function seenAfter(node) { return (eventAt.get(node) || 0) > fetchedAt; }

  function scheduleRefetch() {
    if (refetch) return;
    refetch = setTimeout(async () => {
      refetch = null;
      fetchedAt = app.lastSeq;
      try { await load(); } catch { /* signed out or gone */ }
    }, 250);
  }

  const NODE_STATE = { node_started: "running", node_succeeded: "succeeded", node_failed: "failed", node_retrying: "retrying", node_skipped: "skipped" };

  function apply(e) {
    if (seen.has(e.seq)) return;
    seen.add(e.seq);
    parts.events.append(h("tr", { "data-seq": e.seq },
      h("td", { class: "num" }, e.seq), h("td", {}, when(e.ts)), h("td", {}, e.event),
      h("td", { class: "mono" }, e.node || ""), h("td", { class: "mono" }, e.phase), h("td", { class: "num" }, `${e.progress}%`)));
    if (!run) return;
    const state = NODE_STATE[e.event];
    if (state && e.node) {
      states.set(e.node, state);
      eventAt.set(e.node, e.seq);
      if (drawing) drawing.set(e.node, state);
      const tr = parts.nodes.querySelector(`tr[data-node="${CSS.escape(e.node)}"]`);
      if (tr) { tr.dataset.state = state; tr.children[1].replaceChildren(statusBadge(state)); }
    }
    applyToRun(run, e);
    document.getElementById("run-status")?.replaceChildren(statusBadge(run.status));
    const phase = document.getElementById("run-phase");
    if (phase) phase.textContent = run.phase;
    const progress = document.getElementById("run-progress");
    if (progress) setProgress(progress, run.phase_progress);
    const etaCell = document.getElementById("run-eta");
    if (etaCell) etaCell.replaceChildren(eta(run));
    if (e.event !== "node_progress") scheduleRefetch();
    if (ENDS.has(e.event) && stream) { stream.close(); stream = null; }
  }

  // The run's own stream, from its first event: the event table and node states are
  // built from it; after a reconnect it goes on after the last event it gave.
  function openStream() {
    if (closed) return;
    if (stream) stream.close();
    const last = seen.size ? Math.max(...seen) : 0;
    stream = new EventSource(`/api/v1/runs/${encodeURIComponent(id)}/events?after=${last}`);
    const handle = (m) => apply(JSON.parse(m.data));
    for (const name of Object.keys(NODE_STATE).concat(["run_queued", "run_started", "run_resumed", "node_progress", "run_succeeded", "run_failed", "run_interrupted"])) {
      stream.addEventListener(name, handle);
    }
    stream.onerror = () => {
      if (stream && stream.readyState === EventSource.CLOSED) { stream = null; setTimeout(openStream, 1500); }
    };
  }

  async function chooseNode(node) {
    chosen = node;
    if (drawing) drawing.choose(node);
    if (follow) follow.abort();
    follow = new AbortController();
    const mine = follow;
    parts.logTitle.textContent = `Log of ${node}`;
    parts.log.textContent = "";
    try {
      const response = await fetch(`/api/v1/runs/${encodeURIComponent(id)}/nodes/${encodeURIComponent(node)}/log?follow=true`, { credentials: "same-origin", signal: mine.signal });
      if (!response.ok) { parts.log.textContent = `No log (${response.status}).`; return; }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        let text = parts.log.textContent + decoder.decode(value, { stream: true });
        if (text.length > LOG_LIMIT) text = `…\n${text.slice(text.length - LOG_LIMIT)}`;
        const atEnd = parts.log.scrollTop + parts.log.clientHeight >= parts.log.scrollHeight - 4;
        parts.log.textContent = text;
        if (atEnd) parts.log.scrollTop = parts.log.scrollHeight;
      }
      if (!parts.log.textContent) parts.log.textContent = "(this node printed nothing)";
    } catch (e) {
      if (e.name !== "AbortError") parts.log.append(`\n(the log stopped: ${e.message})`);
    }
  }

  const loaded = load().then(openStream).catch((e) => {
    main().replaceChildren(h("p", { class: "alert", role: "alert" }, e.status === 404 ? `No run ${id}.` : `Could not load run ${id}: ${e.message}`), h("p", {}, h("a", { href: "#/" }, "← Deployments")));
  });

  return {
    loaded,
    // A run resumed (a button elsewhere, the server at its start) gets its stream back.
    onEvent(e) {
      if (e.deployment === id && !stream && (e.event === "run_resumed" || e.event === "run_queued" || e.event === "run_started")) openStream();
    },
    close() {
      closed = true;
      if (stream) stream.close();
      if (follow) follow.abort();
      clearTimeout(refetch);
    },
  };
}

// ---------------------------------------------------------------- deploy

function control(name, schema, required) {
  const id = `input-${name}`;
  const describedBy = `${id}-hint ${id}-error`;
  const common = { id, name, "aria-describedby": describedBy, "aria-required": required ? "true" : null };
  const def = schema.default;
  let input;
  if (schema.enum) {
    input = h("select", common, required && def === undefined ? h("option", { value: "" }, "Choose…") : h("option", { value: "" }, "(default)"),
      schema.enum.map((v) => h("option", { value: JSON.stringify(v), selected: def !== undefined && JSON.stringify(v) === JSON.stringify(def) }, String(v))));
  } else if (schema.type === "boolean") {
    input = h("input", { ...common, type: "checkbox", checked: def === true });
  } else if (schema.type === "integer" || schema.type === "number") {
    input = h("input", { ...common, type: "number", step: schema.type === "integer" ? 1 : "any", value: def !== undefined ? def : null, inputmode: "numeric" });
  } else if (schema.type === "object" || schema.type === "array") {
    input = h("textarea", { ...common, spellcheck: "false", placeholder: schema.type === "object" ? '{"key": "value"}' : "[]" }, def !== undefined ? JSON.stringify(def, null, 2) : "");
  } else {
    input = h("input", { ...common, type: "text", value: def !== undefined ? def : null, autocomplete: "off", spellcheck: "false" });
  }
  const hints = [schema.description, schema.pattern ? `Pattern: ${schema.pattern}` : null, schema.type !== "string" && !schema.enum ? `Type: ${schema.type}` : null].filter(Boolean);
  const field = h("div", { class: "field", "data-input": name },
    schema.type === "boolean"
      ? h("span", { class: "check" }, input, h("label", { for: id }, name))
      : h("label", { for: id }, name, required ? h("span", { class: "required", "aria-hidden": "true" }, " *") : null, required ? h("span", { class: "sr-only" }, " (required)") : null),
    schema.type === "boolean" ? null : input,
    h("span", { class: "hint", id: `${id}-hint` }, hints.join(" · ")),
    h("span", { class: "error", id: `${id}-error`, role: "alert" }));
  return { field, input, read() {
    if (schema.type === "boolean") return input.checked;
    const text = input.value;
    if (text === "") return undefined;
    if (schema.enum) return JSON.parse(text);
    if (schema.type === "integer" || schema.type === "number") return Number(text);
    if (schema.type === "object" || schema.type === "array") {
      try { return JSON.parse(text); } catch (e) { throw { input: name, message: `not valid JSON: ${e.message}` }; }
    }
    return text;
  } };
}

function deployView(chosenName) {
  main().replaceChildren(h("h1", {}, "Deploy"), h("p", { class: "muted" }, "Loading the deployment types…"));
  document.title = "Deploy · Phased";
  const loaded = api("/api/v1/pipelines").then(({ pipelines }) => {
    const select = h("select", { id: "pipeline", name: "pipeline" },
      h("option", { value: "" }, "Choose a deployment type…"),
      pipelines.map((p) => h("option", { value: p.name, selected: p.name === chosenName }, p.name)));
    const area = h("div", {});
    const picker = h("div", { class: "field" }, h("label", { for: "pipeline" }, "Deployment type"), select);
    main().replaceChildren(h("h1", {}, "Deploy"), h("div", { class: "panel" }, picker, area));
    select.addEventListener("change", () => { location.hash = select.value ? `#/deploy/${encodeURIComponent(select.value)}` : "#/deploy"; });
    const pipeline = pipelines.find((p) => p.name === chosenName);
    if (!pipeline) { select.focus(); return; }
    const required = new Set(pipeline.inputs.required || []);
    const controls = Object.entries(pipeline.inputs.properties || {}).map(([name, schema]) => [name, control(name, schema, required.has(name))]);
    const formError = h("div", { id: "form-error", role: "alert" });
    const submit = h("button", { type: "submit", id: "deploy-submit" }, "Deploy");
    const form = h("form", { class: "deploy", id: "deploy-form", novalidate: true },
      pipeline.description ? h("p", { class: "muted" }, pipeline.description) : null,
      controls.map(([, c]) => c.field),
      controls.length ? null : h("p", { class: "muted" }, "This deployment type takes no inputs."),
      formError, h("div", {}, submit));
    area.replaceChildren(form);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      formError.replaceChildren();
      for (const [, c] of controls) { c.input.removeAttribute("aria-invalid"); c.field.querySelector(".error").textContent = ""; }
      const inputs = {};
      const problems = [];
      for (const [name, c] of controls) {
        try { const v = c.read(); if (v !== undefined) inputs[name] = v; } catch (p) { problems.push(p); }
      }
      if (!problems.length) {
        submit.disabled = true;
        try {
          const started = await api("/api/v1/runs", { json: { pipeline: pipeline.name, inputs } });
          location.hash = `#/runs/${encodeURIComponent(started.id)}`;
          return;
        } catch (e) {
          submit.disabled = false;
          const diagnostics = (e.body && e.body.error && e.body.error.diagnostics) || [];
          for (const d of diagnostics) problems.push({ input: d.input, message: d.help ? `${d.message} (${d.help})` : d.message });
          if (!diagnostics.length) problems.push({ message: e.message });
        }
      }
      let first = null;
      for (const p of problems) {
        const c = controls.find(([name]) => name === p.input);
        if (c) {
          c[1].input.setAttribute("aria-invalid", "true");
          const slot = c[1].field.querySelector(".error");
          slot.textContent = slot.textContent ? `${slot.textContent}; ${p.message}` : p.message;
          first = first || c[1].input;
        } else {
          formError.append(h("p", { class: "alert" }, p.message));
        }
      }
      (first || submit).focus();
    });
    const firstInput = controls.length ? controls[0][1].input : submit;
    firstInput.focus();
  });
  return { loaded };
}

// ---------------------------------------------------------------- routing

function route() {
  if (!app.me) return;
  if (app.view && app.view.close) app.view.close();
  const [path, search] = location.hash.replace(/^#/, "").split("?");
  const parts = (path || "/").split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll(".bar nav a")) a.removeAttribute("aria-current");
  if (parts[0] === "runs" && parts[1]) {
    app.view = runView(parts[1]);
  } else if (parts[0] === "deploy" && canDeploy()) {
    document.getElementById("nav-deploy").setAttribute("aria-current", "page");
    app.view = deployView(parts[1]);
  } else {
    document.getElementById("nav-runs").setAttribute("aria-current", "page");
    document.title = "Deployments · Phased";
    app.view = runsView(new URLSearchParams(search || "").get("before"));
  }
  main().focus({ preventScroll: true });
}

async function start() {
  document.getElementById("who").textContent = `${app.me.name} (${app.me.role})`;
  document.getElementById("sign-out").hidden = false;
  document.getElementById("nav-deploy").hidden = !canDeploy();
  // Live from now on: the views read what came before from the API.
  const newest = await api("/api/v1/runs?limit=1");
  app.lastSeq = newest.last_seq;
  openEvents();
  route();
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("sign-out").addEventListener("click", signOut);
  try {
    app.me = await api("/api/v1/session");
    await start();
  } catch (e) {
    if (e.status !== 401) main().replaceChildren(h("p", { class: "alert", role: "alert" }, `The server did not answer: ${e.message}`));
  }
});
