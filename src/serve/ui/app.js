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

// A server message with its `identifiers` shown as code.
function rich(text) {
  return String(text || "").split("`").map((part, i) => (i % 2 ? h("code", {}, part) : part));
}

// Who started a run, from its `actor` (`cli:user@host`, `token:NAME`,
// `webhook:TRIGGER#DELIVERY`, `rollback:RUN`, `watch`); null when the server does not say.
function actor(run) {
  if (run.actor === undefined) return null;
  const text = run.actor || "";
  const [kind, ...rest] = text.split(":");
  const what = rest.join(":");
  if (!text) return "unknown";
  if (kind === "cli") return `${what} (command line)`;
  if (kind === "token") return `token ${what}`;
  if (kind === "webhook") { const [trigger, delivery] = what.split("#"); return `webhook ${trigger}${delivery ? ` (delivery ${delivery})` : ""}`; }
  if (kind === "rollback") return ["rollback of ", h("a", { href: `#/runs/${encodeURIComponent(what)}`, class: "mono" }, what)];
  if (kind === "watch") return "phased watch";
  return text;
}

// What a run deployed, in a few characters: the commit it recorded, its image, else
// the version (or ref, tag, branch) it was given.
function deployedLabel(run) {
  if (!hasDeployed(run)) return h("span", { class: "muted" }, "—");
  const d = run.deployed || {};
  if (d.commit) return h("span", { class: "mono", title: `commit ${d.commit}` }, d.commit.slice(0, 7));
  if (d.image) return h("span", { class: "mono" }, d.image);
  if (run.version) return h("span", { class: "mono" }, run.version);
  return h("span", { class: "muted" }, "—");
}

function hasDeployed(run) {
  const d = run.deployed || {};
  return !!(d.commit || d.image || run.version);
}

// Asks before an action that changes what is deployed; resolves to true on "yes".
function confirmAction({ title, body, yes, danger }) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "confirm", id: "confirm", "aria-labelledby": "confirm-title" });
    const done = (answer) => { dialog.close(); dialog.remove(); resolve(answer); };
    const no = h("button", { type: "button", class: "quiet", id: "confirm-no", onclick: () => done(false) }, "Keep as is");
    dialog.append(
      h("h2", { id: "confirm-title" }, title),
      h("p", {}, body),
      h("div", { class: "toolbar end" }, no, h("button", { type: "button", class: danger ? "danger solid" : "", id: "confirm-yes", onclick: () => done(true) }, yes)));
    dialog.addEventListener("cancel", (ev) => { ev.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
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

// A short duration with a tenth of a second below ten seconds ("0.4s", "7.2s").
function fine(ms) {
  return ms < 10000 ? `${(Math.max(0, ms) / 1000).toFixed(1).replace(/\.0$/, "")}s` : duration(ms);
}

// Durations of what is still running tick here, from the page's clock only.
setInterval(() => {
  for (const el of document.querySelectorAll("[data-since]")) {
    el.textContent = duration(Date.now() - Date.parse(el.dataset.since));
  }
  for (const el of document.querySelectorAll("[data-eta]")) showEta(el);
}, 1000);

function runDuration(run) {
  if (run.finished_at) return h("span", { class: "num" }, fine(Date.parse(run.finished_at) - Date.parse(run.created_at)));
  if (run.status === "running" || run.status === "queued") {
    return h("span", { class: "num", "data-since": run.created_at }, duration(Date.now() - Date.parse(run.created_at)));
  }
  return h("span", { class: "num" }, "—");
}

// What a running run has left, counting down on the page's clock from when it was
// said; but a node running longer than it usually does makes any count a guess, so
// then it says so ("build: running 53s, usually 7s"), and it never says "0s left".
function eta(run) {
  if (run.status !== "running") return "—";
  const known = run.eta_seconds !== null && run.eta_seconds !== undefined;
  const until = known ? (run.eta_at ? Date.parse(run.eta_at) : Date.now()) + run.eta_seconds * 1000 : null;
  const running = (run.running_nodes || []).filter((n) => n.started_at && (n.usual_seconds ?? n.estimate_seconds) !== null && (n.usual_seconds ?? n.estimate_seconds) !== undefined);
  if (until === null && !running.length) return "—";
  const el = h("span", { class: "eta", "data-eta": "", "data-until": until === null ? null : new Date(until).toISOString(), "data-nodes": JSON.stringify(running) });
  showEta(el);
  return el;
}

function showEta(el) {
  const now = Date.now();
  let worst = null;
  for (const n of JSON.parse(el.dataset.nodes || "[]")) {
    const ran = now - Date.parse(n.started_at);
    const usual = (n.usual_seconds ?? n.estimate_seconds) * 1000;
    if (ran > usual && (!worst || ran - usual > worst.over)) worst = { ...n, ran, usual, over: ran - usual };
  }
  el.classList.toggle("late", !!worst);
  if (worst) {
    el.textContent = `${worst.node}: running ${fine(worst.ran)}, ${worst.usual_seconds !== null && worst.usual_seconds !== undefined ? "usually" : "expected"} ${fine(worst.usual)}`;
    return;
  }
  const left = el.dataset.until ? Date.parse(el.dataset.until) - now : null;
  el.textContent = left === null ? "—" : left >= 1000 ? `${duration(left)} left` : "almost done";
}

// The progress a list shows: for a failed run, how far it got before it failed.
function shownProgress(run) {
  if (run.status !== "failed") return run.phase_progress;
  const reached = run.phase_metadata && run.phase_metadata.progressReached;
  return typeof reached === "number" ? reached : run.best_progress || run.phase_progress;
}

// Status, then where: the phase it is in, or the node it failed at.
function stateCell(run) {
  const failedAt = run.status === "failed" ? run.failed_node || (run.phase_metadata && run.phase_metadata.failedNode) : null;
  return [h("span", { class: "state-value" }, statusBadge(run.status), " ",
    failedAt ? h("span", { class: "where" }, "at ", h("span", { class: "mono" }, failedAt))
      : h("span", { class: "where mono" }, run.status === "succeeded" ? "" : run.phase))];
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
    case "run_failed":
      run.status = "failed"; run.finished_at = e.ts; run.error = e.error;
      run.failed_node = e.node || run.failed_node;
      run.phase_metadata = e.metadata || run.phase_metadata;
      break;
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
      h("thead", {}, h("tr", {}, ["Run", "Target", "Type", "Status", "Deployed", "Progress", "Started", "Duration", "ETA"].map((t) => h("th", { scope: "col" }, t)))),
      tbody));
  const empty = h("p", { class: "empty", hidden: true }, "No deployments yet. ", canDeploy() ? h("a", { href: "#/deploy" }, "Start one") : null, canDeploy() ? " or run " : "Run ", h("code", {}, "phased run"), ".");
  const toolbar = h("div", { class: "toolbar" },
    h("h1", {}, "Deployments"), h("span", { class: "spacer" }), filter,
    canDeploy() ? h("a", { class: "button", href: "#/deploy", id: "deploy-link" }, "Deploy") : null);
  main().replaceChildren(toolbar, table, empty, pager);

  function render(run) {
    const label = run.target || run.id.slice(0, 8);
    const tr = h("tr", { "data-id": run.id, "data-status": run.status },
      h("td", { "data-label": "Run" }, h("a", { href: `#/runs/${encodeURIComponent(run.id)}`, class: "mono", title: run.id, "aria-label": `Run ${run.id}` }, run.id.slice(0, 8))),
      h("td", { "data-label": "Target" }, run.target || h("span", { class: "muted" }, "—")),
      h("td", { "data-label": "Type" }, run.pipeline),
      h("td", { "data-label": "Status", class: "state" }, stateCell(run)),
      h("td", { "data-label": "Deployed" }, deployedLabel(run)),
      h("td", { "data-label": "Progress", class: "progress-cell" }, progressBar(shownProgress(run), `Progress of ${label}`)),
      h("td", { "data-label": "Started" }, when(run.created_at)),
      h("td", { "data-label": "Duration" }, runDuration(run)),
      h("td", { "data-label": "ETA", class: "num eta-cell" }, eta(run)));
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
          setProgress(row.tr, shownProgress(row.run));
          row.tr.querySelector(".state").replaceChildren(...stateCell(row.run));
          row.tr.querySelector(".eta-cell").replaceChildren(eta(row.run));
          // A node started: what it usually takes comes with the run.
          if (e.event === "node_started") fetchRun(e.deployment);
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
