// A model version: overview (rollouts, variants, pruning, gates, schema, importance, provenance), card, try it,
// drift.
import { getBlobUrl, getJson, getText, routes } from "./api.js";
import { defaultVersion, versionHref } from "./catalog.js";
import { bars, fmt, fmtBytes, fmtDate, h, note, panel, table } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import { renderTry } from "./tryit.js";
import { renderDrift } from "./drift.js";
import { renderRollouts } from "./rollouts.js";
import { pruningPanel } from "./pruning.js";

const TABS = [["overview", "Overview"], ["card", "Model card"], ["try", "Try it"], ["drift", "Drift"]];

export async function renderVersion(view, { name, version, tab }) {
  const model = await getJson(routes.model(name));
  if (!version) {
    window.location.replace(versionHref(name, defaultVersion(model)));
    return;
  }
  const summary = await getJson(routes.version(name, version));
  const picker = h("select#version-picker", { "aria-label": "Version" },
    model.versions.slice().reverse().map((v) => h("option", { value: v, selected: v === version },
      `version ${v}${Object.entries(model.aliases).filter(([, t]) => t === v).map(([a]) => ` (${a})`).join("")}`)));
  picker.addEventListener("change", () => { window.location.hash = versionHref(name, picker.value, tab); });

  view.append(
    h("div.page-head",
      h("div.grow",
        h("div.crumbs", h("a", { href: "#/" }, "Models"), " / ", name),
        h("h1", name, h("span.muted", ` v${version}`)),
        h("p.muted", summary.description),
        h("div.chips", h("span.badge", summary.task),
          summary.aliases.map((a) => h("span.badge.accent", a)),
          summary.provenance.quick ? h("span.badge.warn", "quick build") : null)),
      h("div", picker)),
    h("nav.tabs", { "aria-label": "Version pages" }, TABS.map(([id, label]) =>
      h("a", { href: versionHref(name, version, id === "overview" ? "" : id),
        "aria-current": id === tab ? "page" : null }, label))));

  const body = h("div");
  view.append(body);
  if (tab === "card") await renderCard(body, name, version);
  else if (tab === "try") await renderTry(body, summary);
  else if (tab === "drift") await renderDrift(body, summary);
  else {
    const rollouts = h("div.stack");
    body.append(rollouts);
    renderOverview(body, summary);
    await renderRollouts(rollouts, summary);
  }
}

function renderOverview(view, s) {
  const shipped = s.variants.find((v) => v.name === s.selected.cpu);
  view.append(h("div.tiles",
    tile("Shipped variant (CPU)", shipped ? `${shipped.name}` : "–"),
    tile(`Test ${s.metric_name}`, shipped?.metrics ? fmt(shipped.metrics.metric, 4) : "–"),
    tile("Latency batch 1", shipped?.metrics?.latency_ms_b1 != null ? `${fmt(shipped.metrics.latency_ms_b1, 3)} ms` : "–"),
    tile("Model file", fmtBytes(shipped?.bytes)),
    tile("Created", fmtDate(s.created_at))));

  const importance = importancePanel(s);
  view.append(h("div.stack", variantsPanel(s), pruningPanel(s),
    h("div.grid-main", gatesPanel(s), h("div.stack", provenancePanel(s))),
    importance ? h("div.grid-main", schemaPanel(s), importance) : schemaPanel(s)));
}

function tile(k, v) {
  return h("div.tile", h("div.k", k), h("div.v", v));
}

function variantsPanel(s) {
  return panel("Variants",
    table(["Variant", "Precision", "Target", "Size", `Test ${s.metric_name}`, "b1 ms", `b${s.latency_batch} ms`, "Gates"],
      s.variants.map((v) => [
        h("span", h("strong", v.name), v.shipped.length ? h("span.badge.accent", { style: { marginLeft: "0.4rem" } },
          `shipped ${v.shipped.join(", ")}`) : null, h("div.muted.small", v.reason)),
        v.precision, v.target, fmtBytes(v.bytes), fmt(v.metrics?.metric, 4),
        fmt(v.metrics?.latency_ms_b1, 3), fmt(v.metrics?.latency_ms_b256, 3),
        v.passed ? h("span.badge.ok", "pass") : h("span.badge.bad", "fail")]),
      { numeric: [3, 4, 5, 6], caption: "Variants" }),
    h("p.muted.small", `Choice: ${s.selection_reason}`),
    Object.keys(s.baselines).length ? h("div", h("h3", "Compared with"),
      table(["Model", `Test ${s.metric_name}`], Object.entries(s.baselines).map(([k, v]) => [k, fmt(v, 4)]),
        { numeric: [1] })) : null);
}

function gatesPanel(s) {
  return panel("Quality gates",
    table(["Gate", "Variant", "Value", "Threshold", "Result"],
      s.gates.map((g) => [h("span", g.name, h("div.muted.small", g.detail)), g.variant, fmt(g.value, 4),
        fmt(g.threshold, 4), g.passed ? h("span.badge.ok", "pass") : h("span.badge.bad", "fail")]),
      { numeric: [2, 3], caption: "Quality gates" }));
}

function schemaPanel(s) {
  const prep = s.preprocessing;
  const parts = [table(["Input", "Type", "Shape"], s.inputs.map((t) => [h("code", t.name), t.dtype, JSON.stringify(t.shape)])),
    h("p.small", "Preprocessing: ", h("code", prep.kind),
      prep.shape ? ` · image ${prep.shape.join("×")}, values ${prep.value_range?.join("–")}` : "",
      prep.max_chars ? ` · up to ${prep.max_chars} characters` : "")];
  if (prep.features) {
    const st = s.reference_stats;
    parts.push(h("h3", `Features (${prep.features.length})`),
      table(["Feature", "Mean", "Std", "Min", "Max"], prep.features.map((f, i) => [f,
        fmt(st.mean?.[i]), fmt(st.std?.[i]), fmt(st.min?.[i]), fmt(st.max?.[i])]), { numeric: [1, 2, 3, 4] }));
  }
  if (s.labels) parts.push(h("p.small", h("span.muted", "Labels: "), s.labels.join(", ")));
  return panel("Input schema", ...parts);
}

/** Global importance (mean |attribution| per feature) when the build recorded it, in any simple shape. */
export function importanceItems(raw) {
  if (!raw) return [];
  let source = raw;
  if (!Array.isArray(raw) && typeof raw === "object") {
    source = raw.features ?? raw.importance ?? raw.values ?? raw;
    if (Array.isArray(raw.features) && Array.isArray(raw.values)) {
      source = raw.features.map((f, i) => [f, raw.values[i]]);
    }
  }
  const items = Array.isArray(source)
    ? source.map((e) => Array.isArray(e) ? { name: String(e[0]), value: Number(e[1]) }
      : { name: String(e.feature ?? e.name ?? e.token ?? "?"), value: Number(e.value ?? e.importance ?? e.mean_abs ?? 0) })
    : Object.entries(source).filter(([, v]) => typeof v === "number").map(([k, v]) => ({ name: k, value: v }));
  return items.filter((i) => Number.isFinite(i.value)).sort((a, b) => b.value - a.value);
}

function importancePanel(s) {
  const items = importanceItems(s.global_importance);
  if (!items.length) return null;
  return panel("Global importance", h("p.muted.small", "Mean |attribution| over the held-out split."),
    bars(items.slice(0, 15), { label: "Global importance per feature" }),
    items.length > 15 ? h("p.muted.small", `and ${items.length - 15} more`) : null);
}

function provenancePanel(s) {
  const p = s.provenance;
  const src = p.imported_from;
  return panel("Provenance", h("dl.facts",
    h("dt", "Recipe"), h("dd", h("code", p.recipe)),
    src ? h("dt", "Imported from") : null,
    src ? h("dd", h("code", src.file), ` (${src.kind})`) : null,
    src ? h("dt", "Source sha256") : null,
    src ? h("dd", h("code", { title: src.sha256 }, `${src.sha256.slice(0, 16)}…`)) : null,
    src ? h("dt", "Checked against") : null,
    src ? h("dd.small", src.reference) : null,
    h("dt", "Git commit"), h("dd", p.git_commit ? h("code", p.git_commit.slice(0, 12)) : "unknown"),
    h("dt", "Data sha256"), h("dd", h("code", { title: p.data_sha256 }, `${p.data_sha256.slice(0, 16)}…`)),
    h("dt", "Seed"), h("dd", String(p.seed)),
    h("dt", "Build time"), h("dd", `${fmt(p.build_seconds, 3)} s${p.quick ? " (quick)" : ""}`),
    h("dt", "Libraries"), h("dd.small", Object.entries(p.libraries).map(([k, v]) => `${k} ${v}`).join(", "))));
}

async function renderCard(view, name, version) {
  const markdown = await getText(routes.card(name, version));
  const article = h("article.markdown.panel", { "aria-label": "Model card" });
  article.innerHTML = renderMarkdown(markdown); // every text run is escaped by renderMarkdown
  await Promise.all([...article.querySelectorAll("img[data-doc]")].map(async (img) => {
    try {
      img.src = await getBlobUrl(routes.file(name, version, img.dataset.doc));
      img.loading = "lazy";
    } catch (err) {
      img.replaceWith(note(`${img.dataset.doc}: ${err.message}`, "warn"));
    }
  }));
  view.append(article);
}
