// Batch: recent outputs from the configured folder or bucket, each with its report and first error rows.
import { getJson, routes } from "./api.js";
import { fmt, fmtDate, h, note, panel, table } from "./dom.js";

export async function renderBatch(view) {
  const body = await getJson(routes.batch());
  view.append(h("div.page-head", h("div.grow", h("h1", "Batch outputs"),
    h("p.muted", "Recent batch predictions: rows in, ok and failed, timings, drift and the first bad rows."))));
  if (!body.configured) {
    view.append(panel("Not configured", note("No batch outputs folder or bucket is configured on this server."),
      h("p", "Start the server with ", h("code", "maas serve --batch-outputs DIR"), " (a folder written by ",
        h("code", "maas batch"), ", or ", h("code", "s3://DATA-BUCKET/outputs"), ") or set ",
        h("code", "MAAS_BATCH_OUTPUTS"), ".")));
    return;
  }
  if (!body.outputs.length) {
    view.append(note("No batch outputs yet: none of the folders holds a report.json."));
    return;
  }
  view.append(h("div.stack", body.outputs.map(outputView)));
}

function outputView(o) {
  const r = o.report || {};
  const rows = r.rows || {};
  const status = r.status || "unknown";
  const kind = status === "ok" ? (rows.failed ? "warn" : "ok") : status === "dispatched" ? "accent" : "bad";
  const total = rows.in || 0;
  const bar = h("div.rows-bar", { role: "img", "aria-label": `${rows.ok ?? 0} ok, ${rows.failed ?? 0} failed of ${total}` },
    ["ok", "failed"].map((k) => { const el = h(`span.${k}`); el.style.width = total ? `${(rows[k] / total) * 100}%` : "0"; return el; }));
  const model = r.model ? `${r.model.name} v${r.model.version} (${r.model.variant})` : "–";
  return h("section.panel.output", { "aria-label": `Batch output ${o.folder || "(top folder)"}` },
    h("div.row.gap", h("h3", o.folder || "(top folder)"), h(`span.badge.${kind}`, status)),
    h("div.tiles",
      tileOf("Model", model), tileOf("Rows in", fmt(rows.in ?? null)), tileOf("OK", fmt(rows.ok ?? null)),
      tileOf("Failed", fmt(rows.failed ?? null)),
      tileOf("Time", r.timings_s ? `${fmt(r.timings_s.total, 3)} s (inference ${fmt(r.timings_s.inference, 3)} s)` : "–"),
      tileOf("Finished", fmtDate(r.finished_at))),
    total ? bar : null,
    driftView(r.drift),
    r.error ? note(r.error, "error") : null,
    o.first_errors.length ? h("div", h("h3", "First error rows"),
      table(["Line", "Error"], o.first_errors.map((e) => [fmt(e.line ?? null), String(e.error ?? JSON.stringify(e))]),
        { numeric: [0] }), o.more_errors ? h("p.muted.small", "More error rows are in errors.jsonl.") : null) : null);
}

function tileOf(k, v) {
  return h("div.tile", h("div.k", k), h("div.v", v));
}

function driftView(drift) {
  if (!drift || typeof drift !== "object") return null;
  const max = drift.max_psi ?? drift.psi_max ?? null;
  const over = drift.features_over_threshold ?? drift.drifted_features ?? drift.over_threshold ?? null;
  const text = [max !== null ? `max PSI ${fmt(max, 3)}` : null,
    Array.isArray(over) ? `${over.length} feature(s) over threshold${over.length ? `: ${over.join(", ")}` : ""}` : over !== null ? `over threshold: ${over}` : null,
    drift.verdict ?? drift.status ?? null].filter(Boolean).join(" · ");
  return h("p.small", h("span.muted", "Drift: "), text || JSON.stringify(drift).slice(0, 300));
}
