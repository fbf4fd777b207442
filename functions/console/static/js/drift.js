// Drift: the latest drift reports written next to the version, with a per-feature PSI chart.
import { getJson, routes } from "./api.js";
import { bars, fmt, fmtDate, h, note, panel } from "./dom.js";

export const WATCH = 0.1;
export const ACT = 0.25;

/** Per-feature PSI from a report, tolerant of its exact shape: [{feature, psi}], {feature: psi} or {feature: {psi}}. */
export function psiItems(report) {
  const source = report.features ?? report.psi ?? report.feature_psi ?? report.per_feature ?? {};
  const items = Array.isArray(source)
    ? source.map((f) => ({ name: String(f.feature ?? f.name ?? "?"), value: Number(f.psi ?? f.value) }))
    : Object.entries(source).map(([name, v]) => ({ name, value: Number(typeof v === "object" && v ? v.psi : v) }));
  return items.filter((i) => Number.isFinite(i.value)).sort((a, b) => b.value - a.value);
}

function predictionPsi(report) {
  const p = report.prediction ?? report.predictions ?? report.prediction_drift;
  if (typeof p === "number") return p;
  if (p && typeof p === "object" && typeof p.psi === "number") return p.psi;
  return typeof report.prediction_psi === "number" ? report.prediction_psi : null;
}

function reportTime(entry) {
  const r = entry.report || {};
  return r.created_at ?? r.generated_at ?? r.finished_at ?? r.window?.end ?? r.window_end ?? null;
}

export function verdict(psi) {
  if (psi >= ACT) return ["bad", "act"];
  if (psi >= WATCH) return ["warn", "watch"];
  return ["ok", "stable"];
}

export async function renderDrift(view, s) {
  const { reports } = await getJson(routes.drift(s.name, s.version));
  if (!reports.length) {
    view.append(panel("Drift", note("No drift reports yet for this version."),
      h("p.muted.small", "The scheduled drift job and `maas drift` write them next to the version " +
        `(models/${s.name}/versions/${s.version}/drift/*.json); they appear here once written.`)));
    return;
  }
  const readable = reports.filter((r) => r.report);
  const picker = h("select#drift-report", { "aria-label": "Drift report" },
    readable.map((r, i) => h("option", { value: i }, `${fmtDate(reportTime(r)) !== "–" ? fmtDate(reportTime(r)) : r.file}`)));
  const body = h("div");
  const draw = () => body.replaceChildren(reportView(readable[Number(picker.value)] ?? readable[0]));
  picker.addEventListener("change", draw);
  if (readable.length) draw();
  view.append(panel("Drift", h("div.toolbar", h("div.field.narrow", h("label", { for: "drift-report" }, "Report"), picker),
    h("p.muted.small", `${reports.length} latest report(s); thresholds: PSI ${WATCH} watch, ${ACT} act.`)),
  readable.length ? body : note("The reports could not be read."),
  reports.filter((r) => !r.report).map((r) => note(`${r.file}: ${r.error}`, "warn"))));
}

function reportView(entry) {
  const r = entry.report;
  const items = psiItems(r);
  const pred = predictionPsi(r);
  const worst = items[0];
  const over = items.filter((i) => i.value >= WATCH).length;
  const top = Math.max(ACT * 1.4, ...items.map((i) => i.value));
  return h("div",
    h("div.tiles",
      h("div.tile", h("div.k", "Features over 0.1"), h("div.v", `${over} of ${items.length}`)),
      h("div.tile", h("div.k", "Worst feature"), h("div.v", worst ? `${worst.name} (${fmt(worst.value, 3)})` : "–")),
      h("div.tile", h("div.k", "Prediction drift (PSI)"), h("div.v", pred === null ? "–" : fmt(pred, 3))),
      h("div.tile", h("div.k", "Rows"), h("div.v", fmt(r.rows ?? r.records ?? r.count ?? null)))),
    items.length ? bars(items.slice(0, 40).map((i) => ({ ...i, kind: verdict(i.value)[0],
      label: `${fmt(i.value, 3)} ${verdict(i.value)[1]}` })), { max: top, label: "PSI per feature", className: "wide-val",
      thresholds: [{ value: WATCH, label: "0.1 watch" }, { value: ACT, label: "0.25 act", kind: "act" }] })
      : note("This report has no per-feature PSI."),
    h("div.legend", h("span", "dashed lines: 0.1 (watch) and 0.25 (act)"), h("span", `file ${entry.file}`)));
}
