// Small DOM helpers: element builder, formatting, bar charts.

/** h("div.cls#id", {attrs}, children...) -> Element. Text children are always text nodes (never HTML). */
export function h(tag, attrs = {}, ...children) {
  const [name, ...rest] = tag.split(/(?=[.#])/);
  const el = document.createElement(name || "div");
  for (const part of rest) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = {};
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function fmt(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  if (value !== 0 && (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3)) return value.toExponential(2);
  return String(Number(value.toPrecision(digits)));
}

/** A count (parameters, MACs): exact below 10,000, else with a K/M/G suffix. */
export function fmtCount(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return "–";
  if (Math.abs(n) < 1e4) return String(n);
  const [div, unit] = Math.abs(n) >= 1e9 ? [1e9, "G"] : Math.abs(n) >= 1e6 ? [1e6, "M"] : [1e3, "K"];
  return `${Number((n / div).toPrecision(3))} ${unit}`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function fmtDate(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

export function note(text, kind = "") {
  return h(`p.note${kind ? "." + kind : ""}`, { role: kind === "error" ? "alert" : null }, text);
}

export function panel(title, ...children) {
  const id = `p-${Math.random().toString(36).slice(2, 8)}`;
  return h("section.panel", { "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

export function table(headers, rows, { numeric = [], caption = null, className = "" } = {}) {
  return h("div.table-wrap", h(`table${className ? "." + className : ""}`,
    caption ? h("caption.sr-only", caption) : null,
    h("thead", h("tr", headers.map((t, i) => h(numeric.includes(i) ? "th.num" : "th", { scope: "col" }, t)))),
    h("tbody", rows.map((cells) => h("tr", cells.map((c, i) => h(numeric.includes(i) ? "td.num" : "td",
      { "data-label": headers[i] }, c)))))));
}

/** Horizontal bars; values in [0, max]. items: [{name, value, label?, kind?}] */
export function bars(items, { max = null, label = "values", digits = 3, thresholds = [], className = "" } = {}) {
  const top = max ?? Math.max(1e-12, ...items.map((i) => Math.abs(i.value)));
  return h(`div.bars${className ? "." + className : ""}`, { role: "list", "aria-label": label }, items.map((item) => {
    const pct = Math.max(0, Math.min(100, (Math.abs(item.value) / top) * 100));
    return h("div", { role: "listitem", style: { display: "contents" } },
      h("span.name", { title: item.name }, item.name),
      h("span.track", h(`span.fill${item.kind ? "." + item.kind : ""}`, { style: { width: `${pct}%` } }),
        thresholds.map((t) => h(`span.threshold${t.kind ? "." + t.kind : ""}`,
          { style: { left: `${Math.min(100, (t.value / top) * 100)}%` }, title: t.label }))),
      h("span.val", item.label ?? fmt(item.value, digits)));
  }));
}

/** Bars centred on zero: positive to the right (blue), negative to the left (red). */
export function divergingBars(items, { label = "attributions" } = {}) {
  const top = Math.max(1e-12, ...items.map((i) => Math.abs(i.value)));
  return h("div.bars", { role: "list", "aria-label": label }, items.map((item) => {
    const half = (Math.abs(item.value) / top) * 50;
    const style = item.value >= 0 ? { left: "50%", width: `${half}%` } : { left: `${50 - half}%`, width: `${half}%` };
    return h("div", { role: "listitem", style: { display: "contents" } },
      h("span.name", { title: item.name }, item.name),
      h("span.track.diverging", h(`span.fill.${item.value >= 0 ? "pos" : "neg"}`, { style })),
      h("span.val", (item.value >= 0 ? "+" : "") + fmt(item.value, 3)));
  }));
}

/** Blue for positive, red for negative weights, alpha by magnitude relative to ``top``. */
export function weightColor(value, top) {
  const a = top > 0 ? Math.min(1, Math.abs(value) / top) * 0.75 : 0;
  return value >= 0 ? `rgba(37, 99, 235, ${a.toFixed(3)})` : `rgba(220, 38, 38, ${a.toFixed(3)})`;
}
