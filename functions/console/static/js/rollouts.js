// Rollouts on the version page: each alias whose shadow or split involves this version (as the alias's target,
// the shadow candidate or the split version), with the shadow's comparison report.
import { getJson, routes } from "./api.js";
import { fmt, fmtDate, h, note, panel, table } from "./dom.js";

/** The aliases whose rollout (or ignored, malformed rollout) involves ``version``. */
export function rolloutsFor(aliases, version) {
  return aliases.filter((a) => (a.shadow || a.split || a.ignored.length)
    && (a.version === version || a.shadow?.candidate === version || a.split?.version === version));
}

export function pct(share) {
  return share === null || share === undefined ? "–" : `${fmt(100 * share, 4)}%`;
}

export async function renderRollouts(view, s) {
  let body;
  try {
    body = await getJson(routes.rollouts(s.name));
  } catch (err) {
    view.append(note(`Rollouts could not be read: ${err.message}`, "warn"));
    return;
  }
  for (const entry of rolloutsFor(body.aliases, s.version)) view.append(rolloutPanel(entry));
}

function rolloutPanel(a) {
  const parts = [];
  if (a.split) {
    parts.push(h("p", h("strong", "Split: "), `${fmt(a.split.percent)}% of ${a.alias}'s traffic goes to `,
      h("strong", `v${a.split.version}`), `, the rest to v${a.version} (sticky per routing key), since `,
      `${fmtDate(a.split.started_at)}.`),
    h("p.muted.small", "Latency, errors and prediction mix per version: the stage's dashboard."));
  }
  if (a.shadow) {
    parts.push(h("p", h("strong", "Shadow: "), h("strong", `v${a.shadow.candidate}`),
      ` answers ${pct(a.shadow.rate)} of ${a.alias}'s requests after v${a.version}'s live answer, since `,
      `${fmtDate(a.shadow.started_at)}.`), reportView(a.report));
  }
  for (const reason of a.ignored) {
    parts.push(note(`A malformed rollout is ignored (${a.alias} keeps serving v${a.version}): ${reason}`, "warn"));
  }
  return h("div.rollout", { "data-alias": a.alias }, panel(`Rollout on ${a.alias}`, ...parts));
}

function tile(k, v) {
  return h("div.tile", h("div.k", k), h("div.v", v));
}

function reportView(r) {
  if (!r) return null;
  if (!r.requests) {
    return note(r.note || "No comparison records yet: they appear once shadowed requests have been answered.");
  }
  const errors = r.candidate_errors;
  const byCode = Object.entries(errors.by_code).map(([code, n]) => `${code} ${n}`).join(", ");
  const lat = r.latency;
  const tiles = [
    tile("Compared", `${r.compared} of ${r.requests} requests`),
    tile("Agreement", `${pct(r.agreement)} of ${r.rows_compared} rows`),
    tile("Candidate errors", `${pct(errors.rate)}${byCode ? ` (${byCode})` : ""}`),
    tile("Latency p50, candidate / live", lat.ratio_p50 === null ? "–"
      : `${fmt(lat.ratio_p50, 3)}× (${fmt(lat.candidate_p50_ms, 3)} / ${fmt(lat.live_p50_ms, 3)} ms)`),
  ];
  if (r.task === "regression") {
    tiles.push(tile("MAE", fmt(r.mae)), tile("p99 |difference|", fmt(r.p99_abs_diff)),
      tile("Mean relative difference", pct(r.mean_rel_diff)));
  } else if (r.task === "embedding") {
    tiles.push(tile("Mean cosine", fmt(r.mean_cosine)), tile("p01 cosine", fmt(r.p01_cosine)));
  }
  return h("div", h("div.tiles", tiles),
    r.task === "classification" && r.confusion ? confusionTable(r.confusion) : null,
    h("p.muted.small", `Report over the newest ${r.records_read} comparison records of ${r.alias} ` +
      `(at most ${r.records_limit}), ${fmtDate(r.first_time)} to ${fmtDate(r.last_time)}. `,
      h("code", "maas shadow report"), " adds the inputs' drift against each version."),
    r.note ? note(r.note, "warn") : null);
}

function confusionTable(confusion) {
  const live = Object.keys(confusion);
  const candidate = [...new Set(live.concat(...Object.values(confusion).map((row) => Object.keys(row))))].sort();
  return h("div", h("h3", "Live label (rows) vs candidate label (columns)"),
    table(["live \\ candidate", ...candidate], live.map((label) => [label,
      ...candidate.map((c) => String(confusion[label][c] ?? 0))]),
    { numeric: candidate.map((_, i) => i + 1), caption: "Confusion of live and candidate labels" }));
}
