// The instrumentations the UI itself needs (overview, VM pages, ready-made
// views): found on the agent when one of the same shape exists, made once
// otherwise, never twice (concurrent asks share one creation). They carry
// idle-max UI_IDLE, which is how the Analytics tab tells them from the
// operator's own, and the agent expires them once no page reads them.
import { api } from './api.js';

export const UI_IDLE = 299;
const MAP_KEY = 'kvmscope.ui-instrs';

// JSON with sorted keys, so that two equal predicates compare equal.
export function canon(v) {
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`;
  return JSON.stringify(v);
}

export function specKey(s) {
  return canon({ m: s.module, s: s.stat, d: s.decomposition || [], p: s.predicate || {}, g: s.granularity || 1 });
}

export const isUiOwned = (i) => i && i['idle-max'] === UI_IDLE;

const pending = new Map();
let listCache = null;

function remembered() {
  try { return JSON.parse(sessionStorage.getItem(MAP_KEY) || '{}'); } catch { return {}; }
}
function remember(key, id) {
  const m = remembered();
  m[key] = String(id);
  sessionStorage.setItem(MAP_KEY, JSON.stringify(m));
}

export function forgetList() { listCache = null; }

// The instrumentation for spec ({module, stat, decomposition, predicate}),
// existing or new.
export function ensureInstr(spec) {
  const full = { granularity: 1, 'retention-time': 600, ...spec, predicate: spec.predicate || {}, 'idle-max': UI_IDLE };
  const key = specKey(full);
  if (pending.has(key)) return pending.get(key);
  const p = (async () => {
    if (!listCache) listCache = api.list();
    let list;
    try { list = await listCache; } catch (e) { listCache = null; throw e; }
    const mine = remembered()[key];
    // a tenant's stored predicate may carry its forced VM scope: the id
    // this tab made is trusted first
    let found = list.find((i) => String(i.id) === mine && i.module === full.module && i.stat === full.stat);
    if (!found) found = list.find((i) => isUiOwned(i) && specKey(i) === key);
    if (!found) {
      found = await api.create(full);
      list.push(found);
    }
    remember(key, found.id);
    return found;
  })();
  pending.set(key, p);
  p.catch(() => pending.delete(key));
  return p;
}

// Drops a cached id (the agent expired or lost it) so that the next
// ensureInstr makes it again.
export function dropInstr(spec) {
  const full = { granularity: 1, 'retention-time': 600, ...spec, predicate: spec.predicate || {}, 'idle-max': UI_IDLE };
  pending.delete(specKey(full));
  listCache = null;
}
