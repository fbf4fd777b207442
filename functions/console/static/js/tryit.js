// Try it: a form built from the manifest (numeric fields, an 8x8 drawing pad, or a text box), the answer,
// and its explanation when the server has the explain route.
import { ApiError, hasRoute, postJson, routes } from "./api.js";
import { bars, divergingBars, fmt, h, note, panel, weightColor } from "./dom.js";

const EXPLAIN_ROUTE = /^\/v1\/models\/\{[^}]+\}\/versions\/\{[^}]+\}\/explain$/;

export async function renderTry(view, s) {
  const result = h("div#try-result", { "aria-live": "polite" },
    h("p.muted", "The answer and its explanation appear here."));
  const kind = s.preprocessing.kind;
  let form;
  if (kind === "tabular") form = tabularForm(s, (instance) => run(s, instance, result));
  else if (kind === "image") form = digitPad(s, (instance) => run(s, instance, result));
  else if (kind === "text_vocab" || kind === "tokenizer") form = textForm(s, (instance) => run(s, instance, result));
  else form = note(`No form for preprocessing kind ${kind}.`);
  view.append(h("div.grid-2", panel("Input", form), panel("Answer", result)));
}

async function run(s, instance, result) {
  result.replaceChildren(h("p.muted", "Asking the model…"));
  let prediction;
  try {
    const body = await postJson(routes.predict(s.name, s.version), { instances: [instance] });
    prediction = body.predictions[0];
  } catch (err) {
    result.replaceChildren(note(`${err.message}`, "error"));
    return;
  }
  result.replaceChildren(answerView(s, prediction));
  const explainBox = h("div#explanation", h("p.muted.small", "Explaining…"));
  result.append(h("h3", "Why"), explainBox);
  if (!(await hasRoute("POST", EXPLAIN_ROUTE))) {
    explainBox.replaceChildren(note("Explanations are not available on this server (it has no explain route)."));
    return;
  }
  try {
    const body = await postJson(routes.explain(s.name, s.version), { instances: [instance] });
    explainBox.replaceChildren(explanationView(s, firstExplanation(body), instance));
  } catch (err) {
    const unavailable = err instanceof ApiError && (err.status === 404 || err.status === 405);
    explainBox.replaceChildren(note(unavailable ? `Explanations are not available for this version: ${err.message}`
      : `The explanation failed: ${err.message}`, unavailable ? "" : "warn"));
  }
}

function answerView(s, p) {
  if (p.probabilities) {
    const items = Object.entries(p.probabilities).map(([name, value]) => ({ name, value }))
      .sort((a, b) => b.value - a.value).slice(0, 10);
    return h("div", h("div.muted.small", "Label"), h("p.answer#answer-label", p.label),
      bars(items, { max: 1, label: "Probabilities", digits: 3 }));
  }
  if (p.value !== undefined) {
    return h("div", h("div.muted.small", "Value"), h("p.answer#answer-value", fmt(p.value, 5)));
  }
  return h("pre", JSON.stringify(p).slice(0, 2000));
}

// ---- explanations (tolerant of the response shape: attributions as a map, an 8x8 grid or tokens) ----

function firstExplanation(body) {
  const list = body.explanations || body.predictions || body.attributions || [body];
  return Array.isArray(list) ? list[0] : list;
}

function attributionsOf(e) {
  return e.attributions ?? e.attribution ?? e.shap_values ?? e.values ?? e.weights;
}

function tokenItems(e) {
  const attr = attributionsOf(e);
  const tokens = e.tokens;
  if (Array.isArray(tokens) && Array.isArray(attr) && attr.every((v) => typeof v === "number")) {
    return tokens.map((t, i) => (typeof t === "object"
      ? { token: String(t.token ?? t.text), weight: attr[i], start: t.start, end: t.end }
      : { token: String(t), weight: attr[i] }));
  }
  const source = Array.isArray(attr) ? attr : Array.isArray(tokens) ? tokens : null;
  if (!source) return null;
  return source.map((t) => Array.isArray(t) ? { token: String(t[0]), weight: Number(t[1]) }
    : { token: String(t.token ?? t.text ?? t.word ?? ""), weight: Number(t.weight ?? t.attribution ?? t.value ?? 0) });
}

function explanationView(s, e, instance) {
  if (!e) return note("The server returned no explanation.");
  const base = e.base_value ?? e.base ?? e.expected_value;
  const head = base !== undefined ? h("p.muted.small", `Base value ${fmt(Number(base), 4)}`,
    e.label !== undefined ? ` · explained class ${e.label}` : "") : null;
  const kind = s.preprocessing.kind;
  if (kind === "image") {
    const grid = attributionsOf(e);
    const flat = Array.isArray(grid) ? grid.flat(2).map(Number) : [];
    if (flat.length !== 64) return note("The explanation has no 8x8 map.");
    return h("div", head, heatMap(flat, instance.flat()), legend());
  }
  if (kind === "tabular") {
    const attr = attributionsOf(e);
    const names = s.preprocessing.features;
    const items = Array.isArray(attr) ? attr.map((v, i) => ({ name: names[i] ?? `#${i}`, value: Number(v) }))
      : Object.entries(attr || {}).map(([name, value]) => ({ name, value: Number(value) }));
    items.sort((a, b) => Math.abs(b.value) - Math.abs(a.value));
    return h("div", head, divergingBars(items.slice(0, 15), { label: "Attribution per feature" }),
      items.length > 15 ? h("p.muted.small", `and ${items.length - 15} smaller ones`) : null, legend());
  }
  const tokens = tokenItems(e);
  if (!tokens) return note("The explanation has no token weights.");
  const top = Math.max(1e-12, ...tokens.map((t) => Math.abs(t.weight)));
  const ranked = tokens.map((t) => ({ name: t.token, value: t.weight }))
    .sort((a, b) => Math.abs(b.value) - Math.abs(a.value)).slice(0, 8);
  const mark = (t) => {
    const span = h("mark.token", { title: `${t.token}: ${fmt(t.weight, 3)}` }, t.token);
    span.style.background = weightColor(t.weight, top);
    span.style.color = "inherit";
    return span;
  };
  // With character offsets, highlight the words inside the text as written (punctuation kept); else list them.
  const spans = typeof instance === "string" && tokens.every((t) => Number.isInteger(t.start) && t.end > t.start);
  let at = 0;
  const parts = spans ? tokens.flatMap((t) => {
    const before = instance.slice(at, t.start);
    at = t.end;
    return [before, mark({ ...t, token: instance.slice(t.start, t.end) })];
  }).concat(instance.slice(at)) : tokens.flatMap((t) => [mark(t), " "]);
  return h("div", head,
    h("p.tokens#tokens", { "aria-label": "Tokens highlighted by weight" }, parts),
    h("h3.small", "Strongest tokens"), divergingBars(ranked, { label: "Token weights" }), legend());
}

function legend() {
  const sw = (color) => { const el = h("span.swatch"); el.style.background = color; return el; };
  return h("div.legend", h("span", sw("rgba(37,99,235,.75)"), "pushes toward the answer"),
    h("span", sw("rgba(220,38,38,.75)"), "pushes away"));
}

function heatMap(weights, pixels) {
  const top = Math.max(1e-12, ...weights.map(Math.abs));
  const strongest = weights.map((w, i) => [Math.abs(w), i]).sort((a, b) => b[0] - a[0]).slice(0, 3)
    .map(([, i]) => `row ${Math.floor(i / 8) + 1} column ${(i % 8) + 1}`);
  return h("div.heat#heatmap", { role: "img",
    "aria-label": `Attribution heat map over the pad; strongest cells: ${strongest.join(", ")}` },
  weights.map((w, i) => {
    const cell = h("div.cell", { title: fmt(w, 3) });
    const ink = Math.round(255 - (pixels[i] / 16) * 150);
    const color = weightColor(w, top);
    cell.style.background = `linear-gradient(${color}, ${color}), rgb(${ink}, ${ink}, ${ink})`;
    return cell;
  }));
}

// ---- forms ----

function tabularForm(s, submit) {
  const features = s.preprocessing.features;
  const st = s.reference_stats;
  const initial = (i) => (st.mean?.[i] !== undefined ? Number(st.mean[i].toPrecision(4)) : 0);
  const inputs = features.map((f, i) => h("input", { id: `f-${i}`, name: f, type: "number", step: "any",
    value: initial(i), required: true, "aria-describedby": `f-${i}-hint` }));
  const form = h("form#try-form", { novalidate: true },
    h("p.muted.small", "Start from the training means; the hints show each feature's reference range."),
    h("div.form-grid", features.map((f, i) => h("div",
      h("label", { for: `f-${i}` }, f), inputs[i],
      h("span.hint", { id: `f-${i}-hint` }, st.min ? `range ${fmt(st.min[i])} – ${fmt(st.max[i])}, mean ${fmt(st.mean[i])}` : "")))),
    h("div.row.gap", { style: { marginTop: "1rem" } },
      h("button.btn.btn-primary", { type: "submit" }, "Predict"),
      h("button.btn", { type: "button", onclick: () => inputs.forEach((el, i) => { el.value = initial(i); }) },
        "Reset to means")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const bad = inputs.find((el) => el.value === "" || !Number.isFinite(Number(el.value)));
    if (bad) { bad.focus(); bad.setAttribute("aria-invalid", "true"); return; }
    inputs.forEach((el) => el.removeAttribute("aria-invalid"));
    submit(Object.fromEntries(features.map((f, i) => [f, Number(inputs[i].value)])));
  });
  return form;
}

function textForm(s, submit) {
  const max = s.preprocessing.max_chars || 2000;
  const text = h("textarea#try-text", { name: "text", maxlength: max, required: true,
    placeholder: "Type a sentence, e.g. The striker scored twice in the final.", "aria-describedby": "try-text-hint" });
  const form = h("form#try-form",
    h("label", { for: "try-text" }, "Text"), text,
    h("span.hint.muted.small#try-text-hint", `Up to ${max} characters.` +
      (s.labels ? ` Labels: ${s.labels.join(", ")}.` : "")),
    h("div.row.gap", { style: { marginTop: "0.75rem" } }, h("button.btn.btn-primary", { type: "submit" }, "Predict")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!text.value.trim()) { text.focus(); return; }
    submit(text.value);
  });
  return form;
}

/** An 8x8 pad (values 0-16): mouse and touch draw; arrows move, Space paints or erases, Enter predicts. */
function digitPad(s, submit) {
  const [rows, cols] = s.preprocessing.shape?.length === 2 ? s.preprocessing.shape : [8, 8];
  const high = s.preprocessing.value_range?.[1] ?? 16;
  const values = new Array(rows * cols).fill(0);
  let cursor = 0;
  const cells = values.map(() => h("div.cell"));
  const pad = h("div.pad#pad", { tabindex: 0, role: "application", "aria-roledescription": "drawing pad",
    "aria-label": `Drawing pad, ${rows} by ${cols} cells`, "aria-describedby": "pad-help" }, cells);
  const status = h("span.sr-only", { "aria-live": "polite" });
  const paint = () => cells.forEach((c, i) => {
    const shade = Math.round(255 - (values[i] / high) * 225);
    c.style.background = `rgb(${shade}, ${shade}, ${shade + Math.round((255 - shade) * 0.08)})`;
    c.classList.toggle("cursor", i === cursor);
  });
  const stamp = (r, c) => {
    values[r * cols + c] = high;
    for (const [dr, dc] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
      const rr = r + dr; const cc = c + dc;
      if (rr >= 0 && rr < rows && cc >= 0 && cc < cols) values[rr * cols + cc] = Math.max(values[rr * cols + cc], Math.round(high * 0.4));
    }
  };
  const cellAt = (event) => {
    const box = pad.getBoundingClientRect();
    const c = Math.floor(((event.clientX - box.left) / box.width) * cols);
    const r = Math.floor(((event.clientY - box.top) / box.height) * rows);
    return r >= 0 && r < rows && c >= 0 && c < cols ? [r, c] : null;
  };
  let drawing = false;
  pad.addEventListener("pointerdown", (event) => {
    drawing = true;
    pad.setPointerCapture(event.pointerId);
    const at = cellAt(event);
    if (at) { stamp(...at); paint(); }
    event.preventDefault();
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const at = cellAt(event);
    if (at) { stamp(...at); paint(); }
  });
  const stop = () => { if (drawing) { drawing = false; submit(grid()); } };
  pad.addEventListener("pointerup", stop);
  pad.addEventListener("pointercancel", () => { drawing = false; });
  pad.addEventListener("keydown", (event) => {
    const r = Math.floor(cursor / cols); const c = cursor % cols;
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (moves[event.key]) {
      const [dr, dc] = moves[event.key];
      cursor = Math.min(rows - 1, Math.max(0, r + dr)) * cols + Math.min(cols - 1, Math.max(0, c + dc));
    } else if (event.key === " ") {
      values[cursor] = values[cursor] > 0 ? 0 : high;
    } else if (event.key === "Backspace" || event.key === "Delete") {
      values[cursor] = 0;
    } else if (event.key === "Enter") {
      submit(grid());
    } else {
      return;
    }
    event.preventDefault();
    status.textContent = `row ${Math.floor(cursor / cols) + 1}, column ${(cursor % cols) + 1}, ${values[cursor] ? "ink" : "empty"}`;
    paint();
  });
  const grid = () => Array.from({ length: rows }, (_, r) => values.slice(r * cols, (r + 1) * cols));
  paint();
  return h("div#try-form",
    h("div.pad-area", h("div", pad,
      h("p.pad-caption#pad-help", "Draw a digit with the mouse or a finger. Keyboard: arrows move, Space paints or " +
        "erases a cell, Enter predicts."), status)),
    h("div.row.gap", { style: { marginTop: "0.75rem" } },
      h("button.btn.btn-primary", { type: "button", onclick: () => submit(grid()) }, "Predict"),
      h("button.btn", { type: "button", onclick: () => { values.fill(0); paint(); } }, "Clear")));
}
