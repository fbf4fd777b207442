// The console: a hash-routed single page. Every page is read-only; the only POSTs are predict and explain.
import { getToken, setToken } from "./api.js";
import { note } from "./dom.js";
import { renderCatalog } from "./catalog.js";
import { renderVersion } from "./version.js";
import { renderBatch } from "./batch.js";

const main = document.getElementById("main");

function parse(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "batch") return { page: "batch" };
  if (parts[0] === "models" && parts[1]) {
    return { page: "version", name: parts[1], version: parts[2] === "versions" ? parts[3] : null,
      tab: parts[4] || "overview" };
  }
  return { page: "models" };
}

let current = 0;
async function route() {
  const ticket = ++current;
  const where = parse(window.location.hash);
  for (const link of document.querySelectorAll("[data-nav]")) {
    const active = link.dataset.nav === (where.page === "batch" ? "batch" : "models");
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const view = document.createElement("div");
  try {
    if (where.page === "batch") await renderBatch(view);
    else if (where.page === "version") await renderVersion(view, where);
    else await renderCatalog(view);
  } catch (err) {
    view.replaceChildren(note(err.message || String(err), "error"));
  }
  if (ticket !== current) return; // a newer navigation won
  main.replaceChildren(...view.childNodes);
  main.dataset.route = window.location.hash || "#/"; // rendered: tests and scripts can wait for it
  const title = main.querySelector("h1");
  document.title = title ? `${title.textContent} · maas console` : "maas console";
}

function setupToken() {
  const button = document.getElementById("token-button");
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  const refresh = () => {
    button.classList.toggle("has-token", Boolean(getToken()));
    button.setAttribute("aria-label", getToken() ? "API token (set)" : "API token (not set)");
  };
  button.addEventListener("click", () => { input.value = getToken(); dialog.showModal(); input.focus(); });
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "save") setToken(input.value.trim());
    if (dialog.returnValue === "clear") setToken("");
    input.value = "";
    refresh();
    if (dialog.returnValue === "save" || dialog.returnValue === "clear") route();
  });
  window.addEventListener("maas:auth-required", () => { if (!dialog.open) button.click(); });
  refresh();
}

document.getElementById("footer-origin").textContent = `Server: ${window.location.origin}`;
setupToken();
window.addEventListener("hashchange", () => { route().then(() => main.focus({ preventScroll: true })); });
route();
