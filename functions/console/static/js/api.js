// Calls to this server's API (same origin), with the API key or bearer token when one is set.
const TOKEN_KEY = "maas.token";
// The console lives at <base>/console/: the API is at <base>/.
const BASE = new URL("../", window.location.href);

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function apiUrl(path) {
  return new URL(path.replace(/^\//, ""), BASE).toString();
}

export function getToken() {
  return window.sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
  else window.sessionStorage.removeItem(TOKEN_KEY);
}

// A maas API key goes in x-api-key (what an API-key stage's gateway caches on); any other token (a JWT) as a
// bearer token.
const API_KEY = /^maas_[a-z2-7]{8}_[A-Za-z0-9_-]{43}$/;

function headers(extra = {}) {
  const out = { ...extra };
  const token = getToken();
  if (token && API_KEY.test(token)) out["x-api-key"] = token;
  else if (token) out.Authorization = `Bearer ${token}`;
  return out;
}

async function request(path, options = {}) {
  let response;
  try {
    response = await fetch(apiUrl(path), { ...options, headers: headers(options.headers), credentials: "same-origin" });
  } catch (err) {
    throw new ApiError(0, "network", `The server did not answer (${err.message}).`);
  }
  if (!response.ok) {
    let body = {};
    try { body = await response.json(); } catch { /* not JSON */ }
    const message = body.error || body.message || `${response.status} ${response.statusText}`;
    if (response.status === 401 || response.status === 403) {
      window.dispatchEvent(new CustomEvent("maas:auth-required"));
    }
    throw new ApiError(response.status, body.code || "http_error", message);
  }
  return response;
}

export async function getJson(path) {
  return (await request(path, { headers: { Accept: "application/json" } })).json();
}

export async function getText(path) {
  return (await request(path)).text();
}

export async function getBlobUrl(path) {
  const blob = await (await request(path)).blob();
  return URL.createObjectURL(blob);
}

export async function postJson(path, body) {
  const response = await request(path, {
    method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", Accept: "application/json" },
  });
  return response.json();
}

let openapi = null;
/** Whether this server documents a route matching ``pattern`` for ``method`` (e.g. explain, built separately). */
export async function hasRoute(method, pattern) {
  if (!openapi) openapi = getJson("openapi.json").catch(() => ({ paths: {} }));
  const doc = await openapi;
  return Object.entries(doc.paths || {}).some(([path, ops]) => pattern.test(path) && ops[method.toLowerCase()]);
}

const enc = encodeURIComponent;
export const routes = {
  models: () => "v1/models",
  model: (name) => `v1/models/${enc(name)}`,
  version: (name, v) => `v1/models/${enc(name)}/versions/${enc(v)}`,
  card: (name, v) => `v1/models/${enc(name)}/versions/${enc(v)}/card`,
  file: (name, v, file) => `v1/models/${enc(name)}/versions/${enc(v)}/files/${enc(file)}`,
  drift: (name, v) => `v1/models/${enc(name)}/versions/${enc(v)}/drift`,
  rollouts: (name) => `v1/models/${enc(name)}/rollouts`,
  predict: (name, v) => `v1/models/${enc(name)}/versions/${enc(v)}/predict`,
  explain: (name, v) => `v1/models/${enc(name)}/versions/${enc(v)}/explain`,
  batch: () => "v1/batch/outputs",
};
