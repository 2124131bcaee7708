// The REST API at /api, same origin; the token (when the server wants one) from sessionStorage.

const KEY = "knitfab.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export function headers(extra = {}) {
  const t = token.get();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

/** fetch /api/<path>; a non-2xx answer becomes an ApiError with Knitfab's message. */
export async function call(path, { method = "GET", body, params, signal } = {}) {
  const url = new URL(`/api/${path}`, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    for (const item of [].concat(v)) if (item !== undefined && item !== null && item !== "") url.searchParams.append(k, item);
  }
  const init = { method, signal, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(url, init);
  if (!res.ok) throw new ApiError(res.status, await message(res));
  if (res.status === 204) return null;
  const type = res.headers.get("Content-Type") || "";
  return type.startsWith("application/json") ? res.json() : res.text();
}

async function message(res) {
  const text = await res.text();
  try {
    return JSON.parse(text).message || text;
  } catch {
    return text || res.statusText;
  }
}

export const api = {
  findData: (params) => call("data/", { params }),
  data: async (id) => {
    const found = await call("data/", { params: { tag: `knit#id:${id}` } });
    if (!found.length) throw new ApiError(404, `data ${id} is not found`);
    return found[0];
  },
  tagData: (id, change) => call(`data/${encodeURIComponent(id)}/`, { method: "PUT", body: change }),
  findPlans: (params) => call("plans/", { params }),
  plan: (id) => call(`plans/${encodeURIComponent(id)}/`),
  setActive: (id, on) => call(`plans/${encodeURIComponent(id)}/active`, { method: on ? "PUT" : "DELETE" }),
  resources: (id, change) => call(`plans/${encodeURIComponent(id)}/resources`, { method: "PUT", body: change }),
  findRuns: (params) => call("runs/", { params }),
  run: (id) => call(`runs/${encodeURIComponent(id)}/`),
  abort: (id) => call(`runs/${encodeURIComponent(id)}/abort`, { method: "PUT" }),
  tearoff: (id) => call(`runs/${encodeURIComponent(id)}/tearoff`, { method: "PUT" }),
  retry: (id) => call(`runs/${encodeURIComponent(id)}/retry`, { method: "PUT" }),
  remove: (id) => call(`runs/${encodeURIComponent(id)}/`, { method: "DELETE" }),
  graph: (kind, params) => call(`x/${kind}`, { params }),
};
