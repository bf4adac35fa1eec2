// The agent's CA REST API, seen from the browser. Every call goes to the
// page's own origin: the UI is served by the agent it talks to, so nothing
// ever leaves the operator's host.

const TOKEN_KEY = 'kvmscope.token';

export class ApiError extends Error {
  constructor(status, code, message, path) {
    super(message);
    this.status = status;   // HTTP status, 0 when the agent did not answer
    this.code = code;       // CA error code, e.g. "InvalidArgument"
    this.path = path;
  }
}

const listeners = new Set();
let lastState = null;

// Connection state for the status bar: "ok", "unreachable", "token", "forbidden".
export function connState() { return lastState ? lastState.s : null; }
export function onState(fn) { listeners.add(fn); if (lastState) fn(lastState); }
function setState(s, detail) {
  // A refused token is reported every time so that the prompt comes back.
  if (s !== 'token' && lastState && lastState.s === s && lastState.detail === detail) return;
  lastState = { s, detail };
  for (const fn of listeners) fn(lastState);
}

export function getToken() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra) {
  const h = { Accept: 'application/json', ...extra };
  const t = getToken();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

// Query strings: arrays become repeated names (selected=a&selected=b), which
// is how the agent reads multi-valued parameters; undefined/null are dropped.
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => u.append(k, String(x)));
    else u.append(k, typeof v === 'boolean' ? (v ? 'true' : 'false') : String(v));
  }
  const s = u.toString();
  return s ? `?${s}` : '';
}

// quiet: a refusal (403, 404) is the caller's to show, not the connection's
// (a tenant asking for the operators' peer list is not a refused token)
export async function request(method, path, { params, body, keepalive, quiet } = {}) {
  const url = path + qs(params);
  let res;
  try {
    res = await fetch(url, {
      method,
      headers: headers(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
      body: body !== undefined ? JSON.stringify(body) : undefined,
      keepalive: !!keepalive,
      cache: 'no-store',
    });
  } catch (e) {
    setState('unreachable', String(e.message || e));
    throw new ApiError(0, 'Unreachable', `agent unreachable at ${location.host}`, path);
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (res.status === 401) {
    setState('token', data && data.message);
    throw new ApiError(401, (data && data.code) || 'Unauthorized',
      (data && data.message) || 'a token is required', path);
  }
  if (!res.ok) {
    if (res.status === 403 && !quiet) setState('forbidden', data && data.message);
    else setState('ok');
    const msg = data && data.message ? data.message : `${method} ${path}: HTTP ${res.status}`;
    throw new ApiError(res.status, (data && data.code) || `HTTP${res.status}`, msg, path);
  }
  setState('ok');
  if (text && data === null)
    throw new ApiError(res.status, 'BadResponse', `${method} ${path}: the answer is not JSON`, path);
  return data;
}

export const api = {
  catalogue: () => request('GET', '/ca'),
  vms: () => request('GET', '/ca/vms'),
  peers: () => request('GET', '/ca/peers', { quiet: true }),
  dashboards: () => request('GET', '/ca/dashboards'),
  dashboard: (name) => request('GET', `/ca/dashboards/${encodeURIComponent(name)}`),
  saveDashboard: (name, body) => request('PUT', `/ca/dashboards/${encodeURIComponent(name)}`, { body }),
  deleteDashboard: (name) => request('DELETE', `/ca/dashboards/${encodeURIComponent(name)}`),
  list: () => request('GET', '/ca/instrumentations'),
  get: (id) => request('GET', `/ca/instrumentations/${encodeURIComponent(id)}`),
  create: (spec) => request('POST', '/ca/instrumentations', { body: spec }),
  update: (id, spec) => request('PUT', `/ca/instrumentations/${encodeURIComponent(id)}`, { body: spec }),
  remove: (id, keepalive) => request('DELETE', `/ca/instrumentations/${encodeURIComponent(id)}`, { keepalive }),
  raw: (id, params) => request('GET', `/ca/instrumentations/${encodeURIComponent(id)}/value/raw`, { params }),
  heatmap: (id, what, params) =>
    request('GET', `/ca/instrumentations/${encodeURIComponent(id)}/value/heatmap/${what}`, { params }),
};
