// Catalog: every model with its versions, aliases, shipped variant, headline metric and creation date.
import { getJson, routes } from "./api.js";
import { fmt, fmtDate, h, note, table } from "./dom.js";

export function versionHref(name, version, tab = "") {
  const base = `#/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`;
  return tab ? `${base}/${tab}` : base;
}

export function defaultVersion(model) {
  return model.aliases.prod || model.versions[model.versions.length - 1];
}

export async function renderCatalog(view) {
  const { models } = await getJson(routes.models());
  const rows = await Promise.all(models.map(async (model) => {
    const version = defaultVersion(model);
    try {
      return { model, version, summary: await getJson(routes.version(model.name, version)) };
    } catch (err) {
      return { model, version, summary: null, error: err.message };
    }
  }));
  const search = h("input#catalog-search", { type: "search", placeholder: "name, task, description, label…",
    autocomplete: "off" });
  const tasks = [...new Set(rows.map((r) => r.summary?.task).filter(Boolean))].sort();
  const task = h("select#catalog-task", h("option", { value: "" }, "All tasks"),
    tasks.map((t) => h("option", { value: t }, t)));
  const body = h("div");
  const count = h("p.muted.small", { "aria-live": "polite" });

  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const shown = rows.filter((r) => {
      const text = [r.model.name, r.summary?.task, r.summary?.description, ...(r.summary?.labels || []),
        ...Object.keys(r.model.aliases)].join(" ").toLowerCase();
      return (!q || text.includes(q)) && (!task.value || r.summary?.task === task.value);
    });
    count.textContent = `${shown.length} of ${rows.length} models`;
    body.replaceChildren(shown.length ? catalogTable(shown) : note(models.length
      ? "No model matches the filter." : "The store has no models yet: publish one with `maas build RECIPE`."));
  };
  search.addEventListener("input", draw);
  task.addEventListener("change", draw);
  draw();

  view.append(
    h("div.page-head", h("div.grow", h("h1", "Models"),
      h("p.muted", "Models published to the store, with the version their default alias serves."))),
    h("div.toolbar", { role: "search" },
      h("div.field", h("label", { for: "catalog-search" }, "Search models"), search),
      h("div.field.narrow", h("label", { for: "catalog-task" }, "Task"), task)),
    count, body);
}

function catalogTable(rows) {
  return table(["Model", "Task", "Versions", "Aliases", "Shipped variant", "Headline metric", "Created"],
    rows.map(({ model, version, summary, error }) => {
      const shipped = summary?.variants.find((v) => v.name === summary.selected.cpu);
      return [
        h("div", h("a", { href: versionHref(model.name, version) }, h("strong", model.name)),
          summary ? h("div.desc", summary.description) : note(`version ${version}: ${error}`, "error")),
        summary ? h("span.badge", summary.task) : "–",
        h("div.chips", model.versions.slice().reverse().map((v) =>
          h(`a.badge${v === version ? ".accent" : ""}`, { href: versionHref(model.name, v),
            "aria-label": `${model.name} version ${v}` }, `v${v}`))),
        Object.keys(model.aliases).length
          ? h("div.chips", Object.entries(model.aliases).map(([a, v]) => h("span.badge", `${a} → v${v}`)))
          : h("span.muted", "none"),
        shipped ? h("span", shipped.name, h("span.muted.small", ` (${shipped.precision})`)) : "–",
        shipped?.metrics ? h("span", h("strong", fmt(shipped.metrics.metric, 4)),
          h("span.muted.small", ` ${summary.metric_name}`)) : "–",
        summary ? fmtDate(summary.created_at) : "–",
      ];
    }), { className: "catalog", caption: "Models in the store" });
}
