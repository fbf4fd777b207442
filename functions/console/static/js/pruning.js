// Structured pruning on a version's overview: every level the build tried against the unpruned fp32 model,
// the widths kept, which level and variant shipped and why, and the card's pruning.png plot.
import { getBlobUrl, routes } from "./api.js";
import { fmt, fmtBytes, fmtCount, h, note, panel, table } from "./dom.js";

export function pct(level) {
  return `${fmt(level * 100, 3)}%`;
}

/** "0.62× fp32"-style note of value / reference, or null when either is missing. */
function ratio(value, reference, what) {
  if (value == null || !reference) return null;
  return h("div.muted.small", `${fmt(value / reference, 2)}× ${what}`);
}

function delta(value, reference) {
  if (value == null || reference == null) return null;
  const d = value - reference;
  return h("div.muted.small", `${d >= 0 ? "+" : "−"}${fmt(Math.abs(d), 3)} vs fp32`);
}

/** The pruning panel, or null when the version was built without pruning (no empty section). */
export function pruningPanel(s) {
  const p = s.pruning;
  if (!p || !Array.isArray(p.levels)) return null;
  const fp32 = s.variants.find((v) => v.name === "fp32");
  const base = fp32?.metrics ?? {};
  const batch = s.latency_batch;
  const rows = [[h("strong", "unpruned (fp32)"), fmtCount(p.params), fmtCount(p.macs), fmtBytes(fp32?.bytes),
    fmt(base.latency_ms_b1, 3), fmt(base.latency_ms_b256, 3), fmt(base.metric, 4), h("span.badge", "reference")]];
  for (const l of p.levels) {
    const chosen = p.chosen_level !== null && l.level === p.chosen_level;
    rows.push([
      h("span", h("strong", pct(l.level)), chosen ? [" ", h("span.badge.accent", "chosen")] : null),
      h("span", fmtCount(l.params), ratio(l.params, p.params, "unpruned")),
      h("span", fmtCount(l.macs), ratio(l.macs, p.macs, "unpruned")),
      h("span", fmtBytes(l.bytes), ratio(l.bytes, fp32?.bytes, "fp32")),
      h("span", fmt(l.latency_ms_b1, 3), ratio(l.latency_ms_b1, base.latency_ms_b1, "fp32")),
      h("span", fmt(l.latency_ms_b256, 3), ratio(l.latency_ms_b256, base.latency_ms_b256, "fp32")),
      h("span", fmt(l.metric, 4), delta(l.metric, base.metric)),
      h("span", l.passed ? h("span.badge.ok", "pass") : h("span.badge.bad", "refused"), h("div.muted.small", l.reason)),
    ]);
  }
  const shipped = s.selected.cpu;
  const fromLevel = shipped.startsWith("pruned-") && p.chosen_level !== null;
  return h("section.panel.pruning", { "aria-labelledby": "pruning-title" },
    h("h2#pruning-title", "Pruning"),
    h("p.shipped",
      h("strong", "Shipped (CPU): "), h("code", shipped),
      fromLevel ? ` — made from level ${pct(p.chosen_level)}` : " — not a pruned variant",
      p.chosen_level === null ? " (no level passed its gates)" : ""),
    h("dl.facts",
      h("dt", "Level chosen"), h("dd", p.chosen_level === null ? "none" : pct(p.chosen_level), h("div.muted.small", p.reason)),
      h("dt", "Variant chosen"), h("dd.small", s.selection_reason),
      h("dt", "Method"), h("dd", p.method),
      h("dt", "Library"), h("dd", p.library),
      h("dt", "Criterion"), h("dd", p.criterion),
      h("dt", "Pruned"), h("dd", p.units.join(", ")),
      h("dt", "Recovery"), h("dd", p.recovery)),
    h("h3", "Levels tried"),
    h("p.muted.small", `Level: the fraction of each prunable layer's width removed. Size, latency and metric are ` +
      `each level's pruned-fp32 ONNX file, measured like the variants (b1 and b${batch}); gates as for the variants.`),
    table(["Level", "Params", "MACs", "Size", "b1 ms", `b${batch} ms`, `Test ${s.metric_name}`, "Gates"], rows,
      { numeric: [1, 2, 3, 4, 5, 6], caption: "Pruning levels tried", className: "pruning-levels" }),
    widthsTable(p),
    plot(s));
}

function widthsTable(p) {
  const layers = Object.keys(p.widths ?? {});
  if (!layers.length) return null;
  return h("details", h("summary", `Widths kept per layer (${layers.length} layers)`),
    table(["Layer", "Unpruned", ...p.levels.map((l) => pct(l.level))],
      layers.map((k) => [h("code", k), String(p.widths[k]), ...p.levels.map((l) => fmt(l.kept?.[k]))]),
      { numeric: [1, ...p.levels.map((_, i) => i + 2)], caption: "Widths kept per layer" }));
}

function plot(s) {
  if (!s.pruning.plot) return null;
  const figure = h("figure.plot", h("figcaption.muted.small", "The model card's pruning.png."));
  const img = h("img", { alt: `Pruning levels of ${s.name} version ${s.version}: metric against latency and size` });
  figure.prepend(img);
  getBlobUrl(routes.file(s.name, s.version, s.pruning.plot))
    .then((url) => { img.src = url; })
    .catch((err) => img.replaceWith(note(`${s.pruning.plot}: ${err.message}`, "warn")));
  return figure;
}
