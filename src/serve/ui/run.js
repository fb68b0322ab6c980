// Phased dashboard: one run (what it deployed and who started it, its graph beside the
// log of the node chosen, its nodes, phases, releases and events), followed live.
// Loaded after app.js, log.js and graph.js, whose helpers it uses.
"use strict";

// Phases in order with when each started and ended, and the metadata each recorded.
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

// The phases as a timeline: each bar starts where its phase started and is as long as
// it lasted, on one scale from the run's start to its end (or now).
function drawTimeline(list, into) {
  const now = Date.now();
  const t0 = list.length ? Date.parse(list[0].start) : now;
  const ends = list.map((p) => (p.end ? Date.parse(p.end) : now));
  const total = Math.max(1, ...ends.map((e) => e - t0));
  into.replaceChildren(
    h("li", { class: "axis", "aria-hidden": "true" }, h("span", {}), h("span", { class: "scale" }, h("span", {}, "0s"), h("span", {}, fine(total))), h("span", {})),
    ...list.map((p, i) => {
      const start = Date.parse(p.start) - t0, span = ends[i] - Date.parse(p.start);
      const meta = Object.entries(p.metadata || {});
      const fill = h("span", { class: `bar-fill${p.end ? "" : " open"}`, "data-left": (start / total) * 100, "data-width": (span / total) * 100 });
      return h("li", { "data-phase": p.phase },
        h("span", { class: "mono" }, p.phase),
        h("span", { class: "bar-track" }, fill,
          h("span", { class: "sr-only" }, `from ${fine(start)} to ${fine(start + span)} after the start`)),
        h("span", { class: "num" }, p.end ? fine(span) : h("span", { "data-since": p.start }, duration(span))),
        meta.length ? h("dl", {}, meta.map(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "string" ? v : JSON.stringify(v))])) : null);
    }));
  // Through the CSSOM: the page's policy allows no style attributes.
  for (const fill of into.querySelectorAll(".bar-fill")) {
    fill.style.left = `${fill.dataset.left}%`;
    fill.style.width = `${fill.dataset.width}%`;
  }
}

// The node whose log says why a run failed: a failed node none of whose own nodes
// (`node.x`, `node[item]`) failed too.
function failedLeaf(run, states) {
  const failed = (run.nodes || []).map((n) => n.node).filter((id) => (states.get(id) || "") === "failed");
  return failed.find((id) => !failed.some((o) => o !== id && (o.startsWith(`${id}.`) || o.startsWith(`${id}[`)))) || null;
}

function shortValue(v) {
  const text = typeof v === "string" ? v : JSON.stringify(v);
  return text.length > 160 ? `${text.slice(0, 159)}…` : text;
}

function runView(id) {
  const states = new Map();       // node -> state
  let run = null, graph = null, drawing = null, stream = null, refetch = null, ticking = null;
  let chosen = null, closed = false;
  const seen = new Set();         // seqs shown in the event table
  const log = logPane(id);
  const parts = {
    head: h("div", {}), facts: h("div", {}), alert: h("div", {}),
    graph: h("div", { class: "graph", id: "graph", tabindex: 0, role: "region", "aria-label": "Graph" }),
    hint: h("p", { class: "hint", id: "graph-hint", hidden: true }, "Scroll the graph sideways to see all of it. Choose a node to see its log."),
    nodes: h("tbody", { id: "nodes-body" }), timeline: h("ol", { class: "timeline", id: "timeline" }),
    events: h("tbody", { id: "events-body" }),
    releases: h("section", { id: "releases" }),
  };
  main().replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← Deployments")),
    parts.head, parts.facts, parts.alert,
    h("div", { class: "run-grid" },
      h("section", { class: "graph-pane", "aria-labelledby": "graph-title" }, h("h2", { id: "graph-title" }, "Graph"), parts.hint, parts.graph),
      log.section),
    h("h2", {}, "Nodes"),
    h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Nodes" }, h("table", { class: "cards", id: "nodes" },
      h("thead", {}, h("tr", {}, ["Node", "State", "Attempt", "Duration", "Log"].map((t) => h("th", { scope: "col" }, t)))),
      parts.nodes)),
    h("h2", {}, "Phases"), parts.timeline,
    parts.releases,
    h("h2", {}, "Events"),
    h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Events" }, h("table", { class: "cards", id: "events" },
      h("thead", {}, h("tr", {}, ["#", "Time", "Event", "Node", "Phase", "Progress"].map((t) => h("th", { scope: "col" }, t)))),
      parts.events)));

  function nodeRow(n) {
    const state = states.get(n.node) || n.status;
    const logged = state !== "pending" && state !== "skipped";
    return h("tr", { "data-node": n.node, "data-state": state },
      h("td", { "data-label": "Node", class: "mono" }, n.node),
      h("td", { "data-label": "State" }, statusBadge(state)),
      h("td", { "data-label": "Attempt", class: "num" }, n.attempt || "—"),
      h("td", { "data-label": "Duration", class: "num" }, n.duration_ms !== null ? duration(n.duration_ms) : n.started_at && state === "running" ? h("span", { "data-since": n.started_at }, duration(Date.now() - Date.parse(n.started_at))) : "—"),
      h("td", { "data-label": "Log" }, logged
        ? h("button", { type: "button", class: "quiet", "aria-label": `Log of ${n.node}`, onclick: () => chooseNode(n.node) }, "Log")
        : h("span", { class: "muted" }, state === "pending" ? "not started" : "—")));
  }

  function renderHead() {
    const label = run.target || run.pipeline;
    document.title = `${label} · ${run.status} · Phased`;
    const buttons = [];
    const rollback = run.rollback;
    if (canDeploy() && rollback && rollback.available) {
      buttons.push(h("button", { type: "button", class: "quiet", id: "rollback-here", onclick: rollbackTo(run.id) }, "Roll back to this release"));
    }
    if (canDeploy() && ["failed", "interrupted", "cancelled"].includes(run.status)) {
      buttons.push(h("button", { type: "button", id: "resume", onclick: act("resume") }, "Resume"));
    }
    if (canDeploy() && (run.status === "running" || run.status === "queued")) {
      buttons.push(h("button", { type: "button", class: "danger", id: "cancel", onclick: cancel }, "Cancel"));
    }
    const by = actor(run);
    parts.head.replaceChildren(
      h("div", { class: "toolbar" }, h("h1", {}, label, " ", h("span", { class: "muted mono", title: run.id }, run.id)), h("span", { class: "spacer" }), buttons),
      h("dl", { class: "summary", id: "summary" },
        h("div", {}, h("dt", {}, "Status"), h("dd", { id: "run-status" }, statusBadge(run.status))),
        h("div", {}, h("dt", {}, "Phase"), h("dd", { id: "run-phase", class: "mono" }, run.phase)),
        h("div", {}, h("dt", {}, "Progress"), h("dd", { id: "run-progress" }, progressBar(shownProgress(run), "Progress of this run"))),
        h("div", {}, h("dt", {}, "Type"), h("dd", {}, run.pipeline)),
        hasDeployed(run) ? h("div", {}, h("dt", {}, "Deployed"), h("dd", { id: "run-deployed" }, deployedLabel(run))) : null,
        by === null ? null : h("div", {}, h("dt", {}, "Started by"), h("dd", { id: "run-actor" }, by)),
        h("div", {}, h("dt", {}, "Started"), h("dd", {}, when(run.created_at))),
        h("div", {}, h("dt", {}, "Duration"), h("dd", {}, runDuration(run))),
        run.status === "running" || run.status === "queued" ? h("div", {}, h("dt", {}, "ETA"), h("dd", { id: "run-eta" }, eta(run))) : null,
        h("div", {}, h("dt", {}, "Attempt"), h("dd", {}, run.attempt))),
      ...(rollback && !rollback.available && run.status === "succeeded" && rollback.live !== run.id && rollback.reason
        ? [h("p", { class: "muted", id: "rollback-reason" }, "No rollback to this release: ", rich(rollback.reason), ".")] : []));
    renderFacts();
    const failed = failedLeaf(run, states);
    if (run.status === "failed") {
      parts.alert.replaceChildren(h("section", { class: "alert", id: "failure", role: "alert" },
        h("h2", {}, failed ? `Failed at ${failed}` : "Failed"),
        h("pre", {}, run.error || (failed && (run.nodes.find((n) => n.node === failed) || {}).error) || "")));
    } else {
      parts.alert.replaceChildren();
    }
  }

  // What the run was given and what it recorded it deployed.
  function renderFacts() {
    const d = run.deployed || {};
    const recorded = [["Commit", d.commit], ["Image", d.image], ["Release folder", d.release]].filter(([, v]) => v);
    const inputs = Object.entries(run.inputs || {}).filter(([, v]) => v !== null && v !== "");
    if (!recorded.length && !inputs.length) { parts.facts.replaceChildren(); return; }
    parts.facts.replaceChildren(h("section", { class: "facts", id: "deployed", "aria-labelledby": "deployed-title" },
      h("h2", { id: "deployed-title" }, "What it deployed"),
      h("dl", {},
        recorded.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", { class: "mono" }, v))),
        inputs.map(([k, v]) => h("div", { "data-input": k }, h("dt", {}, h("span", { class: "muted" }, "input "), k), h("dd", { class: "mono", title: typeof v === "string" ? v : JSON.stringify(v) }, shortValue(v)))))));
  }

  function act(what) {
    return async (ev) => {
      ev.target.disabled = true;
      try {
        await api(`/api/v1/runs/${encodeURIComponent(id)}/${what}`, { json: {} });
        if (what === "resume") openStream();
        scheduleRefetch();
      } catch (e) {
        parts.alert.replaceChildren(h("p", { class: "alert", role: "alert" }, `Could not ${what}: `, rich(e.message)));
        ev.target.disabled = false;
      }
    };
  }

  async function cancel(ev) {
    const live = (releaseList.find((r) => r.live) || {}).id;
    const yes = await confirmAction({
      title: `Cancel run ${id.slice(0, 8)} of ${run.target || run.pipeline}?`,
      body: ["Its running steps are stopped and the run ends cancelled",
        live ? [": release ", h("span", { class: "mono" }, live), " stays live."] : "."],
      yes: "Cancel the run", danger: true,
    });
    if (yes) act("cancel")(ev);
  }

  function renderTimeline() {
    drawTimeline(phases(run), parts.timeline);
  }

  let shownReleases = "", releaseList = [];
  function renderReleases(list) {
    releaseList = list;
    // Redrawn only when it changed: a button is not replaced under the pointer.
    const key = JSON.stringify(list) + canDeploy();
    if (key === shownReleases) return;
    shownReleases = key;
    if (!run.target || !list.length) { parts.releases.replaceChildren(); return; }
    const rows = list.map((r) => h("tr", { "data-release": r.id, "data-live": r.live ? "true" : "false" },
      h("td", { "data-label": "Live" }, r.live ? h("span", { class: "status s-succeeded" }, "live") : ""),
      h("td", { "data-label": "Run" }, h("a", { href: `#/runs/${encodeURIComponent(r.id)}`, class: "mono" }, r.id)),
      h("td", { "data-label": "Finished" }, when(r.finished_at)),
      h("td", { "data-label": "Deployed", class: "mono" }, r.rollback_of ? `rollback to ${r.rollback_of}` : [r.deployed.commit && `commit ${r.deployed.commit.slice(0, 12)}`, r.deployed.image, r.version, r.deployed.release].filter(Boolean).join(" · ") || "—"),
      h("td", { "data-label": "Action" }, canDeploy() && r.rollback && r.rollback.available
        ? h("button", { type: "button", class: "quiet", "data-rollback": r.id, "aria-label": `Roll back ${run.target} to ${r.id}`, onclick: rollbackTo(r.id, list) }, "Roll back to this")
        : "")));
    parts.releases.replaceChildren(
      h("h2", {}, `Releases of ${run.target}`),
      h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Releases" },
        h("table", { class: "cards", id: "releases-table" },
          h("thead", {}, h("tr", {}, ["Live", "Run", "Finished", "Deployed", "Action"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows))));
  }

  function rollbackTo(release, list) {
    return async (ev) => {
      const live = (list && (list.find((r) => r.live) || {}).id) || (run.rollback && run.rollback.live);
      // A release named by its id, and its version when it has one.
      const named = (id) => {
        const r = (list || []).find((x) => x.id === id) || (id === run.id ? run : {});
        return [h("span", { class: "mono" }, id), r.version ? [" (", h("span", { class: "mono" }, r.version), ")"] : ""];
      };
      const yes = await confirmAction({
        title: `Roll back ${run.target} to release ${release}?`,
        body: ["Release ", named(release), " becomes live again",
          live ? [" in place of ", named(live)] : "", ". This starts a rollback run of ", h("span", { class: "mono" }, run.target), "."],
        yes: "Roll back",
      });
      if (!yes) return;
      ev.target.disabled = true;
      try {
        const started = await api(`/api/v1/targets/${encodeURIComponent(run.target)}/rollback`, { json: { to: release } });
        location.hash = `#/runs/${encodeURIComponent(started.id)}`;
      } catch (e) {
        parts.alert.replaceChildren(h("p", { class: "alert", role: "alert" }, "Could not roll back: ", rich(e.message)));
        ev.target.disabled = false;
      }
    };
  }

  function renderNodes() {
    parts.nodes.replaceChildren(...(run.nodes || []).map(nodeRow));
  }

  function showHint() {
    parts.hint.hidden = parts.graph.scrollWidth <= parts.graph.clientWidth + 2;
  }
  window.addEventListener("resize", showHint);

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
    showHint();
    // A failed run opens with the log of the node that failed; a running one with the
    // log of what it runs.
    if (!chosen) {
      const first = run.status === "failed" ? failedLeaf(run, states)
        : run.status === "running" ? [...(run.nodes || [])].reverse().map((n) => n.node).find((n) => states.get(n) === "running") : null;
      if (first) chooseNode(first, false);
    }
    clearInterval(ticking);
    ticking = run.status === "running" ? setInterval(renderTimeline, 1000) : null;
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
      h("td", { "data-label": "#", class: "num" }, e.seq), h("td", { "data-label": "Time" }, when(e.ts)), h("td", { "data-label": "Event" }, e.event),
      h("td", { "data-label": "Node", class: "mono" }, e.node || ""), h("td", { "data-label": "Phase", class: "mono" }, e.phase), h("td", { "data-label": "Progress", class: "num" }, `${e.progress}%`)));
    const state = NODE_STATE[e.event];
    if (state && e.node) {
      states.set(e.node, state);
      eventAt.set(e.node, e.seq);
      if (drawing) drawing.set(e.node, state);
      const tr = parts.nodes.querySelector(`tr[data-node="${CSS.escape(e.node)}"]`);
      const n = (run.nodes || []).find((x) => x.node === e.node);
      if (tr && n) tr.replaceWith(nodeRow(n));
    }
    applyToRun(run, e);
    document.getElementById("run-status")?.replaceChildren(statusBadge(run.status));
    const phase = document.getElementById("run-phase");
    if (phase) phase.textContent = run.phase;
    const progress = document.getElementById("run-progress");
    if (progress) setProgress(progress, shownProgress(run));
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

  // The node's log beside the graph (below it on a phone, brought into view when a
  // node was chosen there).
  function chooseNode(node, byHand = true) {
    chosen = node;
    if (drawing) drawing.choose(node);
    log.open(node, states.get(node) || "pending");
    if (byHand && matchMedia("(max-width: 900px)").matches) log.section.scrollIntoView({ block: "start" });
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
      log.close();
      clearTimeout(refetch);
      clearInterval(ticking);
      window.removeEventListener("resize", showHint);
    },
  };
}
