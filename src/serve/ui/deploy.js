// Phased dashboard: the deploy form, made from a deployment type's declared inputs:
// an object input the pipeline hands to one of several sub-pipelines (`source`) gets
// a sub-form per alternative, any other object a list of fields; inputs only the
// operator sets are an admin's; "Plan" shows what the run would do before "Deploy"
// starts it, and the server's errors stand next to their fields. Loaded after app.js.
"use strict";

// ---------------------------------------------------------------- controls

const isAdmin = () => app.me && app.me.role === "admin";
const shown = (schema) => !schema["x-operator"] || isAdmin();

function hintOf(schema) {
  return [schema.description, schema.pattern ? `Pattern: ${schema.pattern}` : null,
    schema["x-operator"] ? "Set by the operator (admin) only" : null,
    schema["x-path"] ? "A path on the server, under the folders it allows" : null,
    schema.type && schema.type !== "string" && schema.type !== "object" && !schema.enum ? `Type: ${schema.type}` : null].filter(Boolean).join(" · ");
}

// One field: its label, its control, its hint and a slot for its error. `read()`
// gives its value (undefined: not given) or throws {input, message}.
function field(name, schema, required, path) {
  const key = path ? `${path}.${name}` : name;
  const id = `input-${key.replace(/[^A-Za-z0-9_-]/g, "-")}`;
  const common = { id, name: key, "aria-describedby": `${id}-hint ${id}-error`, "aria-required": required ? "true" : null };
  const def = schema.default;
  const label = h("label", { for: id }, name, required ? h("span", { class: "required", "aria-hidden": "true" }, " *") : null, required ? h("span", { class: "sr-only" }, " (required)") : null);
  const box = (control, extra) => h("div", { class: "field", "data-input": key }, label, control,
    h("span", { class: "hint", id: `${id}-hint` }, hintOf(schema)),
    h("span", { class: "error", id: `${id}-error`, role: "alert" }), extra || null);
  if (schema.type === "object" && Array.isArray(schema.oneOf)) return choiceField(key, id, schema, common, box);
  if (schema.type === "object") return mapField(key, id, schema, box);
  let input;
  if (schema.enum) {
    input = h("select", common, required && def === undefined ? h("option", { value: "" }, "Choose…") : h("option", { value: "" }, "(default)"),
      schema.enum.map((v) => h("option", { value: JSON.stringify(v), selected: def !== undefined && JSON.stringify(v) === JSON.stringify(def) }, String(v))));
  } else if (schema.type === "boolean") {
    input = h("input", { ...common, type: "checkbox", checked: def === true });
    const f = h("div", { class: "field", "data-input": key }, h("span", { class: "check" }, input, h("label", { for: id }, name)),
      h("span", { class: "hint", id: `${id}-hint` }, hintOf(schema)), h("span", { class: "error", id: `${id}-error`, role: "alert" }));
    return { key, field: f, input, read: () => input.checked, parts: [] };
  } else if (schema.type === "integer" || schema.type === "number") {
    input = h("input", { ...common, type: "number", step: schema.type === "integer" ? 1 : "any", value: def !== undefined ? def : null, inputmode: "numeric" });
  } else if (schema.type === "array") {
    input = h("textarea", { ...common, spellcheck: "false", placeholder: '["a", "b"]' }, def !== undefined ? JSON.stringify(def, null, 2) : "");
  } else {
    input = h("input", { ...common, type: "text", value: def !== undefined ? def : null, autocomplete: "off", spellcheck: "false" });
  }
  return { key, field: box(input), input, parts: [], read() {
    const text = input.value;
    if (text === "") return undefined;
    if (schema.enum) return JSON.parse(text);
    if (schema.type === "integer" || schema.type === "number") return Number(text);
    if (schema.type === "array") {
      try { return JSON.parse(text); } catch (e) { throw { input: key, message: `not a JSON list: ${e.message}` }; }
    }
    return text;
  } };
}

// An object the pipeline hands to one of several sub-pipelines, chosen by one of its
// fields (`source.type`): that field as a choice, then the chosen one's own fields.
function choiceField(key, id, schema, common, box) {
  const alternatives = schema.oneOf;
  const selector = Object.keys(alternatives[0].properties).find((p) => alternatives.every((a) => a.properties[p] && a.properties[p].const !== undefined));
  const select = h("select", common, h("option", { value: "" }, "Choose…"), alternatives.map((a) => h("option", { value: a.title }, a.title)));
  const area = h("fieldset", { class: "sub", hidden: true });
  const built = new Map();  // alternative -> its fields
  let current = [];
  function show() {
    const chosen = alternatives.find((a) => a.title === select.value);
    area.hidden = !chosen;
    if (!chosen) { current = []; area.replaceChildren(); return; }
    if (!built.has(chosen.title)) {
      const req = new Set(chosen.required || []);
      built.set(chosen.title, Object.entries(chosen.properties).filter(([n, s]) => n !== selector && shown(s)).map(([n, s]) => field(n, s, req.has(n), key)));
    }
    current = built.get(chosen.title);
    area.replaceChildren(h("legend", {}, `${key}: ${chosen.title}`), ...current.map((c) => c.field));
  }
  select.addEventListener("change", show);
  const control = {
    key, field: box(select, area), input: select,
    get parts() { return current.flatMap((c) => [c, ...c.parts]); },
    read() {
      if (!select.value) return undefined;
      const out = { [selector]: select.value };
      for (const c of current) { const v = c.read(); if (v !== undefined) out[c.key.slice(key.length + 1)] = v; }
      return out;
    },
  };
  return control;
}

// Any other object: a list of name and value fields (`files`: a file name and its text).
function mapField(key, id, schema, box) {
  const rows = h("div", { class: "pairs", id });
  const add = h("button", { type: "button", class: "quiet small", id: `${id}-add` }, "Add a field");
  let n = 0;
  function row(name, value) {
    n += 1;
    const k = h("input", { type: "text", class: "pair-key", "aria-label": `${key}: field name ${n}`, value: name || null, autocomplete: "off", spellcheck: "false" });
    const v = h("textarea", { class: "pair-value", "aria-label": `${key}: value ${n}`, rows: 1, spellcheck: "false" }, value || "");
    const tr = h("div", { class: "pair" }, k, v, h("button", { type: "button", class: "quiet small", "aria-label": `Remove field ${n} of ${key}`, onclick: () => tr.remove() }, "Remove"));
    rows.append(tr);
    return k;
  }
  for (const [k, v] of Object.entries(schema.default || {})) row(k, typeof v === "string" ? v : JSON.stringify(v));
  add.addEventListener("click", () => row().focus());
  return { key, field: box(rows, add), input: add, parts: [], read() {
    const out = {};
    for (const pair of rows.querySelectorAll(".pair")) {
      const k = pair.querySelector(".pair-key").value.trim();
      const v = pair.querySelector(".pair-value").value;
      if (!k && !v) continue;
      if (!k) throw { input: key, message: "a field has a value but no name" };
      out[k] = v;
    }
    return Object.keys(out).length ? out : undefined;
  } };
}

// ---------------------------------------------------------------- the plan

// What a run does when another run of its target is going (`concurrency.policy`).
const POLICY = { queue: "it waits for a run already going", supersede: "it stops a run already going at its next step", reject: "it is refused while another run goes" };

function planView(plan) {
  const target = plan.target
    ? [" on target ", h("span", { class: "mono" }, plan.target), plan.policy ? ` (${POLICY[plan.policy] || plan.policy})` : ""]
    : "";
  return h("section", { class: "panel plan", id: "plan", "aria-labelledby": "plan-title", tabindex: -1 },
    h("h2", { id: "plan-title" }, "What this run would do"),
    h("p", { class: "muted" }, `${plan.nodes.length} steps of `, h("span", { class: "mono" }, plan.pipeline), target, ". Nothing has started."),
    h("ol", { class: "plan-steps" }, plan.nodes.map((n) => h("li", { "data-node": n.node, class: n.skipped ? "skipped" : null },
      h("div", { class: "plan-line" },
        h("span", { class: "num pct" }, `${n.progress_start}–${n.progress_end}%`),
        h("span", { class: "mono" }, n.phase || ""),
        h("strong", { class: "mono" }, n.node),
        h("span", { class: "muted" }, n.uses || n.pipeline || ""),
        n.skipped ? h("span", { class: "status s-skipped" }, "skipped") : null),
      n.note ? h("p", { class: "muted" }, n.note) : null,
      n.with && typeof n.with.run === "string" ? h("pre", { class: "cmd" }, n.with.run) : null,
      withList(n.with)))));
}

// A step's other parameters, each on a line of its own (long values cut).
function withList(given) {
  if (!given || typeof given !== "object" || Array.isArray(given)) return null;
  const entries = Object.entries(given).filter(([k, v]) => k !== "run" && v !== null && v !== "").slice(0, 8);
  if (!entries.length) return null;
  return h("dl", { class: "with" }, entries.map(([k, v]) => {
    const text = typeof v === "string" ? v : JSON.stringify(v);
    return h("div", {}, h("dt", {}, k), h("dd", {}, text.length > 120 ? `${text.slice(0, 119)}…` : text));
  }));
}

// ---------------------------------------------------------------- deploy

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
    const controls = Object.entries(pipeline.inputs.properties || {}).filter(([, s]) => shown(s)).map(([name, schema]) => field(name, schema, required.has(name)));
    // What only the operator sets is an admin's, folded away: most runs keep its defaults.
    const operator = new Set(Object.entries(pipeline.inputs.properties || {}).filter(([, s]) => s["x-operator"]).map(([name]) => name));
    const plain = controls.filter((c) => !operator.has(c.key));
    const settings = controls.filter((c) => operator.has(c.key));
    const formError = h("div", { id: "form-error", role: "alert" });
    const submit = h("button", { type: "submit", id: "deploy-submit" }, "Deploy");
    const planButton = h("button", { type: "button", class: "quiet", id: "plan-submit" }, "Plan");
    const planArea = h("div", { id: "plan-area" });
    const form = h("form", { class: "deploy", id: "deploy-form", novalidate: true },
      pipeline.description ? h("p", { class: "muted" }, pipeline.description) : null,
      plain.map((c) => c.field),
      settings.length ? h("details", { class: "operator", id: "operator-inputs" }, h("summary", {}, `Operator settings (${settings.length})`), h("div", { class: "fields" }, settings.map((c) => c.field))) : null,
      controls.length ? null : h("p", { class: "muted" }, "This deployment type takes no inputs."),
      formError, h("div", { class: "toolbar" }, planButton, submit), planArea);
    area.replaceChildren(form);
    const every = () => controls.flatMap((c) => [c, ...c.parts]);

    function clear() {
      formError.replaceChildren();
      for (const c of every()) { c.input.removeAttribute("aria-invalid"); c.field.querySelector(".error").textContent = ""; }
    }

    function gather(problems) {
      const inputs = {};
      for (const c of controls) {
        try { const v = c.read(); if (v !== undefined) inputs[c.key] = v; } catch (p) { problems.push(p); }
      }
      return inputs;
    }

    // The server's diagnostics next to their fields (`source.url` by the sub-form's).
    function show(problems, fallback) {
      let first = null;
      for (const p of problems) {
        const c = every().find((x) => x.key === p.input) || (p.input && every().find((x) => p.input.startsWith(`${x.key}.`)));
        const text = [rich(p.message), p.help ? [" (", rich(p.help), ")"] : ""];
        if (c) {
          c.input.setAttribute("aria-invalid", "true");
          const folded = c.field.closest("details");
          if (folded) folded.open = true;
          const slot = c.field.querySelector(".error");
          if (slot.textContent) slot.append("; ");
          slot.append(...[text].flat(Infinity));
          first = first || c.input;
        } else {
          formError.append(h("p", { class: "alert" }, text));
        }
      }
      (first || fallback).focus();
    }

    function diagnostics(e) {
      const list = (e.body && e.body.error && e.body.error.diagnostics) || [];
      const out = list.map((d) => ({ input: d.input, message: d.message, help: d.help && d.help !== ((pipeline.inputs.properties[d.input] || {}).description) ? d.help : null }));
      return out.length ? out : [{ message: e.message }];
    }

    planButton.addEventListener("click", async () => {
      clear();
      planArea.replaceChildren();
      const problems = [];
      const inputs = gather(problems);
      if (problems.length) return show(problems, planButton);
      planButton.disabled = true;
      try {
        const plan = await api("/api/v1/plan", { json: { pipeline: pipeline.name, inputs } });
        planArea.replaceChildren(planView(plan));
        planArea.firstChild.focus();
      } catch (e) {
        show(diagnostics(e), planButton);
      } finally { planButton.disabled = false; }
    });

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clear();
      const problems = [];
      const inputs = gather(problems);
      if (!problems.length) {
        submit.disabled = true;
        try {
          const started = await api("/api/v1/runs", { json: { pipeline: pipeline.name, inputs } });
          location.hash = `#/runs/${encodeURIComponent(started.id)}`;
          return;
        } catch (e) {
          submit.disabled = false;
          problems.push(...diagnostics(e));
        }
      }
      show(problems, submit);
    });
    const firstInput = controls.length ? controls[0].input : submit;
    firstInput.focus();
  });
  return { loaded };
}
