// Phased dashboard: a run's graph, left to right, each node with its state; a node
// chosen opens its log. Loaded after app.js.
"use strict";

// ---------------------------------------------------------------- the graph

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
