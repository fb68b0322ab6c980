// Phased dashboard: the deploy form, made from a deployment type's declared inputs,
// with the server's validation errors next to their fields. Loaded after app.js.
"use strict";

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

