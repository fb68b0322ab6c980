// Phased dashboard: one run (its graph, nodes, phases, releases, log and events),
// followed live. Loaded after app.js, whose helpers it uses.
"use strict";

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
    // Only once the run is loaded (its stream opens after that): an event is applied
    // to the state it follows, and counted as seen only then.
    if (!run || seen.has(e.seq)) return;
    seen.add(e.seq);
    parts.events.append(h("tr", { "data-seq": e.seq },
      h("td", { class: "num" }, e.seq), h("td", {}, when(e.ts)), h("td", {}, e.event),
      h("td", { class: "mono" }, e.node || ""), h("td", { class: "mono" }, e.phase), h("td", { class: "num" }, `${e.progress}%`)));
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

  // The run's stream opens once it is loaded, never before (the page's own stream may
  // announce the run first).
  let ready = false;
  const loaded = load().then(() => { ready = true; openStream(); }).catch((e) => {
    main().replaceChildren(h("p", { class: "alert", role: "alert" }, e.status === 404 ? `No run ${id}.` : `Could not load run ${id}: ${e.message}`), h("p", {}, h("a", { href: "#/" }, "← Deployments")));
  });

  return {
    loaded,
    // A run resumed (a button elsewhere, the server at its start) gets its stream back.
    onEvent(e) {
      if (ready && e.deployment === id && !stream && (e.event === "run_resumed" || e.event === "run_queued" || e.event === "run_started")) openStream();
    },
    close() {
      closed = true;
      if (stream) stream.close();
      if (follow) follow.abort();
      clearTimeout(refetch);
    },
  };
}

