// Phased dashboard: a node's log, beside the graph. Followed while the node runs;
// each line can show the time it was written (the server keeps one time per second
// of output; a line written after the page opened the log shows when it arrived);
// long lines wrap or scroll; the whole log downloads as a file. Loaded after app.js.
"use strict";

const TIME = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
const BYTES = new TextEncoder();

function logPane(runId) {
  const title = h("h2", { id: "log-title" }, "Log");
  const times = h("input", { type: "checkbox", id: "log-times" });
  const wrap = h("input", { type: "checkbox", id: "log-wrap", checked: true });
  const download = h("a", { class: "button quiet small", id: "log-download", hidden: true }, "Download");
  const pre = h("pre", { class: "log", id: "log", role: "log", "aria-live": "off", tabindex: 0, "aria-labelledby": "log-title" }, "Choose a node in the graph or the table to see its log.");
  const section = h("section", { class: "log-pane", id: "log-pane", "aria-labelledby": "log-title" },
    h("div", { class: "log-head" }, title,
      h("div", { class: "log-tools" },
        h("label", { class: "check" }, times, "Timestamps"),
        h("label", { class: "check" }, wrap, "Wrap lines"),
        download)),
    pre);
  let follow = null;
  let lines = [];        // {text, at}: complete lines
  let partial = "";      // the line being written
  let offset = 0;        // bytes of the log before `partial`
  let recorded = [];     // [byte offset, unix ms]: the server's times of the lines
  let known = 0;         // the bytes the server had written when it gave its times
  let cut = false;

  const clock = (ms) => (ms ? TIME.format(new Date(ms)) : "        ");

  function render() {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const shown = partial ? lines.concat([{ text: partial, at: null }]) : lines;
    const text = shown.map((l) => (times.checked ? `${clock(l.at)}  ${l.text}` : l.text)).join("\n");
    pre.textContent = (cut ? "…\n" : "") + text;
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }

  // When the line starting at byte `at` was written: the server's time for it, else
  // (written after the page asked for the times) now, as it arrives.
  function timeOf(at) {
    if (at >= known) return Date.now();
    let found = null;
    for (const [where, ms] of recorded) { if (where <= at) found = ms; else break; }
    return found;
  }

  function take(chunk) {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop();
    for (const text of parts) {
      lines.push({ text, at: timeOf(offset) });
      offset += BYTES.encode(text).length + 1;
    }
    let size = lines.reduce((n, l) => n + l.text.length + 1, 0);
    while (size > LOG_LIMIT && lines.length) { size -= lines.shift().text.length + 1; cut = true; }
  }

  times.addEventListener("change", render);
  wrap.addEventListener("change", () => pre.classList.toggle("nowrap", !wrap.checked));

  async function open(node, state) {
    if (follow) follow.abort();
    follow = new AbortController();
    const mine = follow;
    lines = []; partial = ""; offset = 0; recorded = []; known = 0; cut = false;
    title.textContent = `Log of ${node}`;
    const path = `/api/v1/runs/${encodeURIComponent(runId)}/nodes/${encodeURIComponent(node)}/log`;
    if (state === "pending") {
      download.hidden = true;
      pre.textContent = "This node has not started yet: no log.";
      return;
    }
    download.href = path;
    download.setAttribute("download", `${runId}-${node}.log`);
    download.setAttribute("aria-label", `Download the log of ${node}`);
    download.hidden = false;
    pre.textContent = "";
    try {
      const given = await api(`${path}/times`).catch(() => ({ times: [], size: 0 }));
      if (mine.signal.aborted) return;
      recorded = given.times || [];
      known = given.size || 0;
      const response = await fetch(`${path}?follow=true`, { credentials: "same-origin", signal: mine.signal });
      if (!response.ok) { pre.textContent = `No log (${response.status}).`; return; }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        take(decoder.decode(value, { stream: true }));
        render();
      }
      if (!lines.length && !partial) pre.textContent = "(this node printed nothing)";
    } catch (e) {
      if (e.name !== "AbortError") pre.append(`\n(the log stopped: ${e.message})`);
    }
  }

  return {
    section,
    open,
    close() { if (follow) follow.abort(); },
  };
}
