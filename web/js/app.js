// kvmscope web UI: the connection state, the pages (host overview, a VM's
// page, analytics), the time every chart shares (a live window, or an
// absolute range when paused or zoomed), the state in the URL, named
// dashboards on the agent, and the keys.
//
// The URL holds the whole view: #/host, #/vm/NAME or #/analytics, then
// ?w=SECONDS (live) or ?from=T&to=T (absolute), &show=panel,... (a VM
// page's panels), &views=VIEW:VM,... (ready-made views open in Analytics)
// and &p=JSON (each chart's selections, colour mode, scale, overlays).
import { api, onState, getToken, setToken, connState } from './api.js';
import * as util from './util.js';
import { h, fmtTime } from './util.js';
import { Chart, defaultView } from './chart.js';
import { Overview } from './overview.js';
import { VmPage, VM_PANELS } from './vmpage.js';
import { CreateForm } from './create.js';
import { ensureInstr, isUiOwned, forgetList } from './instr.js';

const RETENTION = 600;
const WINDOWS = [60, 120, 300, 600];
const VIEWS = [
  { key: '1', id: 'when', title: 'What runs when inside each second', specs: [
    { module: 'vm', stat: 'irqs', decomposition: ['vector', 'subsecond'] },
    { module: 'vm', stat: 'samples', decomposition: ['vcpu', 'subsecond'] }] },
  { key: '2', id: 'exits', title: 'Why the VM exits', specs: [
    { module: 'vm', stat: 'exits', decomposition: ['reason'] },
    { module: 'vm', stat: 'exits', decomposition: ['reason', 'latency'] }] },
  { key: '3', id: 'disk', title: 'Disk layout over time', specs: [
    { module: 'vm', stat: 'disk_ops', decomposition: ['disk', 'offset'] }] },
  { key: '4', id: 'procs', title: 'Guest processes (CR3)', specs: [
    { module: 'vm', stat: 'samples', decomposition: ['mmuctx'] }] },
];

const $ = (sel) => document.querySelector(sel);

const app = {
  catalogue: null,
  page: null,          // 'host' | 'vm' | 'analytics'
  vm: null,
  tm: { live: true, window: 300 },
  crosshairT: null,
  charts: new Map(),   // analytics: key -> Chart
  views: [],           // analytics: open ready-made views [{id, vm}]
  panelViews: {},      // key -> view settings (from the URL)
  overview: null,
  vmPage: null,
  stopped: false,      // waiting for a token: nothing is polled
  refreshMs: [],       // durations of the refreshes of the charts on screen
  seen401: false,
};

// ---- time -----------------------------------------------------------------

app.time = () => app.tm;
const nowSec = () => Math.floor(Date.now() / 1000);

function setTime(tm, quiet) {
  if (!tm.live) {
    const oldest = nowSec() - RETENTION;
    let { from, to } = tm;
    from = Math.floor(from); to = Math.ceil(to);
    if (to - from < 2) to = from + 2;
    if (from < oldest) { to += oldest - from; from = oldest; }
    if (to > nowSec() - 2) { from -= to - (nowSec() - 2); to = nowSec() - 2; from = Math.max(from, oldest); }
    tm = { live: false, from, to };
  }
  app.tm = tm;
  document.body.classList.toggle('paused', !tm.live);
  $('#pause').textContent = tm.live ? 'pause' : 'live';
  $('#pause').setAttribute('aria-pressed', tm.live ? 'false' : 'true');
  $('#pause').classList.toggle('on', !tm.live);
  $('#window').value = tm.live ? String(tm.window) : '';
  $('#window').querySelector('option[value=""]').hidden = tm.live;
  $('#range-from').value = tm.live ? '' : localInput(tm.from);
  $('#range-to').value = tm.live ? '' : localInput(tm.to);
  $('#range-note').textContent = tm.live ? `live · newest final second on the right` : `${fmtTime(tm.from)} – ${fmtTime(tm.to)} (${tm.to - tm.from} s), paused`;
  for (const b of document.querySelectorAll('.scroll-btn')) b.disabled = tm.live;
  if (!quiet) { stateChanged(); refreshAll(true); }
}

function localInput(t) {
  const d = new Date(t * 1000);
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// the live window frozen where it is now
function frozen() {
  if (!app.tm.live) return app.tm;
  const c = allCharts()[0];
  const to = (c && c.frame ? c.frame.to + 1 : nowSec() - 2);
  return { live: false, from: to - app.tm.window, to };
}

app.zoom = (from, to) => setTime({ live: false, from, to });
function togglePause() { setTime(app.tm.live ? frozen() : { live: true, window: app.lastWindow || 300 }); }
function scroll(dir) {
  if (app.tm.live) setTime(frozen(), true);
  const span = app.tm.to - app.tm.from;
  setTime({ live: false, from: app.tm.from + dir * Math.max(1, Math.floor(span / 2)), to: app.tm.to + dir * Math.max(1, Math.floor(span / 2)) });
}

app.crosshair = (t) => {
  app.crosshairT = t;
  for (const c of allCharts()) c.drawCrosshair();
};

// ---- which charts are on screen -------------------------------------------

// Live charts share one right edge: the newest second that every chart on
// screen holds as final. Each metric has its own final_until (vm.exits waits
// for exits still open, up to 3 s), and a chart that ended at its own would
// put one time at a different x on each chart, under the shared crosshair.
app.liveEdge = () => {
  const now = Date.now() / 1000;
  let end = Infinity;
  for (const c of allCharts()) if (c.visible && c.store) end = Math.min(end, c.store.newestFinal(now) + c.store.gran);
  return end;
};

function allCharts() {
  if (app.page === 'vm' && app.vmPage) return app.vmPage.all();
  if (app.page === 'analytics') return [...app.charts.values()];
  return [];
}

// Only charts in view are refreshed; one scrolled into view catches up.
const io = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const c = e.target.chart;
    if (!c) continue;
    c.visible = e.isIntersecting;
    if (c.visible) c.refresh();
  }
}, { rootMargin: '100px' });
app.observe = (c) => { c.el.chart = c; io.observe(c.el); };
app.unobserve = (c) => io.unobserve(c.el);

// ---- state in the URL -----------------------------------------------------

function viewsOfCharts() {
  const out = { ...app.panelViews };
  for (const c of allCharts()) {
    const d = {}, def = defaultView();
    for (const [k, v] of Object.entries(c.view)) if (JSON.stringify(v) !== JSON.stringify(def[k])) d[k] = v;
    if (c.pinned) d.pin = [c.pinned.t, c.pinned.row];
    if (Object.keys(d).length) out[c.key] = d; else delete out[c.key];
  }
  return out;
}

function hashOf() {
  const q = new URLSearchParams();
  if (app.tm.live) q.set('w', String(app.tm.window)); else { q.set('from', String(app.tm.from)); q.set('to', String(app.tm.to)); }
  if (app.page === 'vm' && app.vmPage) {
    const shown = app.vmPage.shown();
    if (shown.length !== VM_PANELS.length) q.set('show', shown.join(','));
  }
  if (app.page === 'analytics' && app.views.length) q.set('views', app.views.map((v) => `${v.id}:${v.vm}`).join(','));
  const pv = viewsOfCharts();
  if (Object.keys(pv).length) q.set('p', JSON.stringify(pv));
  const path = app.page === 'vm' ? `/vm/${encodeURIComponent(app.vm)}` : `/${app.page}`;
  return `#${path}?${q.toString()}`;
}

function stateChanged() {
  if (!app.page) return;
  app.panelViews = viewsOfCharts();
  const want = hashOf();
  if (location.hash !== want) history.replaceState(null, '', want);
}
app.stateChanged = stateChanged;

function parseHash(hash) {
  const raw = (hash || '').replace(/^#/, '');
  const [path, query] = raw.split('?');
  const q = new URLSearchParams(query || '');
  const parts = (path || '').split('/').filter(Boolean);
  let page = 'host', vm = null;
  if (parts[0] === 'vm' && parts[1]) { page = 'vm'; vm = decodeURIComponent(parts[1]); } else if (parts[0] === 'analytics') page = 'analytics';
  // a link without a time keeps the one on screen
  let tm = null;
  if (q.get('from') && q.get('to')) tm = { live: false, from: Number(q.get('from')), to: Number(q.get('to')) };
  else if (q.get('w')) tm = { live: true, window: WINDOWS.includes(Number(q.get('w'))) ? Number(q.get('w')) : 300 };
  let pv = {};
  try { pv = JSON.parse(q.get('p') || '{}') || {}; } catch { pv = {}; }
  const show = q.get('show') ? q.get('show').split(',') : null;
  const views = (q.get('views') || '').split(',').filter(Boolean).map((s) => { const i = s.indexOf(':'); return { id: s.slice(0, i), vm: s.slice(i + 1) }; })
    .filter((v) => VIEWS.some((x) => x.id === v.id) && v.vm);
  return { page, vm, tm, pv, show, views };
}

// ---- pages ----------------------------------------------------------------

function viewOf(key) {
  const v = app.panelViews[key];
  if (!v) return undefined;
  const rest = { ...v };
  delete rest.pin;
  return rest;
}

function restorePins() {
  for (const c of allCharts()) {
    const v = app.panelViews[c.key];
    if (v && v.pin && !c.pinned) { c.pinned = { t: v.pin[0], row: v.pin[1] }; }
  }
}

function clearPage() {
  for (const c of allCharts()) app.unobserve(c);
  app.charts.clear();
  app.vmPage = null;
}

function route() {
  const st = parseHash(location.hash);
  app.panelViews = st.pv;
  clearPage();
  app.page = st.page;
  app.vm = st.vm;
  app.views = st.views;
  const tm = st.tm || app.tm;
  if (tm.live) app.lastWindow = tm.window;
  setTime(tm, true);
  document.querySelectorAll('.tab').forEach((b) => {
    const on = b.dataset.tab === st.page;
    b.classList.toggle('on', on);
    if (on) b.setAttribute('aria-current', 'page'); else b.removeAttribute('aria-current');
  });
  $('#tab-vm').hidden = st.page !== 'vm';
  $('#tab-vm').textContent = st.page === 'vm' ? `VM ${st.vm}` : 'VM';
  document.querySelectorAll('.view').forEach((v) => { v.hidden = v.id !== `view-${st.page}`; });
  document.title = st.page === 'vm' ? `${st.vm} · kvmscope` : st.page === 'analytics' ? 'analytics · kvmscope' : 'host · kvmscope';
  if (!app.catalogue) return;
  if (st.page === 'vm') {
    const views = {};
    for (const p of VM_PANELS) views[p.id] = viewOf(p.id);
    app.vmPage = new VmPage(app, $('#view-vm'), st.vm, { show: st.show, views });
    setTimeout(restorePins, 1500);
  } else if (st.page === 'analytics') {
    buildAnalytics();
  }
  stateChanged();
  refreshAll(true);
}

// ---- analytics ---------------------------------------------------------------

function buildAnalytics() {
  $('#panels').replaceChildren();
  const vms = app.vmNames || [];
  const sel = $('#view-vm-sel');
  sel.replaceChildren(...vms.map((n) => h('option', { value: n }, n)));
  if (!vms.length) sel.append(h('option', { value: '' }, '(no VM)'));
  for (const v of app.views) openView(VIEWS.find((x) => x.id === v.id), v.vm, true);
  api.list().then((list) => {
    for (const i of list) if (!isUiOwned(i)) addUserChart(i);
    $('#nopanels').hidden = app.charts.size > 0;
  }).catch(() => {});
}

function mountChart(c, top) {
  app.charts.set(c.key, c);
  if (top) $('#panels').prepend(c.el); else $('#panels').append(c.el);
  $('#nopanels').hidden = true;
  app.observe(c);
  c.refresh();
}

function addUserChart(instr, focus) {
  const key = `i${instr.id}`;
  if (app.charts.has(key)) { if (focus) app.charts.get(key).el.scrollIntoView({ block: 'nearest' }); return; }
  const c = new Chart(app, instr, { key, view: viewOf(key), onRemove: removeUserChart });
  mountChart(c, !!focus);
  if (focus) c.el.scrollIntoView({ block: 'nearest' });
}

// ✕ deletes the instrumentation on the agent, for everyone who reads it:
// asked first.
async function removeUserChart(c) {
  const ok = await confirmDialog(`Delete instrumentation #${c.id} (${c.describe()}) on the agent? Everyone reading it loses it and its data.`);
  if (!ok) return;
  try { await api.remove(c.id); } catch (e) { if (e.status !== 404) { c.setStatus(`delete failed: ${e.message}`, 'err'); return; } }
  dropChart(c);
}
function dropChart(c) {
  app.unobserve(c);
  c.el.remove();
  app.charts.delete(c.key);
  $('#nopanels').hidden = app.charts.size > 0;
  stateChanged();
}
app.lost = (c) => { if (app.page === 'analytics' && c.onRemove) setTimeout(() => dropChart(c), 3000); };

function confirmDialog(text) {
  const dlg = $('#confirm');
  $('#confirm-text').textContent = text;
  dlg.returnValue = '';
  dlg.showModal();
  return new Promise((res) => dlg.addEventListener('close', () => res(dlg.returnValue === 'yes'), { once: true }));
}

// A ready-made view, scoped to one VM; its instrumentations are found or
// made once (never duplicated), and closing it closes the charts only.
async function openView(v, vm, quiet) {
  if (!v) return;
  vm = vm || $('#view-vm-sel').value;
  if (!vm) { $('#views-note').textContent = 'no VM to scope the view to'; return; }
  if (!app.views.some((x) => x.id === v.id && x.vm === vm)) app.views.push({ id: v.id, vm });
  for (const [n, s] of v.specs.entries()) {
    const key = `${v.id}-${n}-${vm}`;
    if (app.charts.has(key)) { if (!quiet) app.charts.get(key).el.scrollIntoView({ block: 'nearest' }); continue; }
    const instr = await ensureInstr({ ...s, predicate: { eq: ['vm', vm] } });
    if (app.page !== 'analytics' || app.charts.has(key)) continue;
    const c = new Chart(app, instr, { key, title: `${v.title} · ${vm}`, view: viewOf(key),
      onRemove: undefined });
    c.el.querySelector('.pctrl').append(h('button', { class: 'btn', title: 'close this view (the instrumentation stays for others)', 'aria-label': `close ${v.title}`,
      onclick: () => { app.views = app.views.filter((x) => !(x.id === v.id && x.vm === vm)); for (const [k, x] of [...app.charts]) if (k.startsWith(`${v.id}-`) && k.endsWith(`-${vm}`)) dropChart(x); } }, 'close'));
    mountChart(c, true);
  }
  stateChanged();
}

// ---- dashboards ------------------------------------------------------------

async function openDashboards() {
  const dlg = $('#dash-dialog');
  const list = $('#dash-list');
  $('#dash-msg').textContent = '';
  list.replaceChildren(h('li', { class: 'dim' }, 'loading…'));
  if (!dlg.open) dlg.showModal();
  try {
    const res = await api.dashboards();
    const names = res.dashboards || [];
    list.replaceChildren(...names.map((n) => h('li', {},
      h('button', { class: 'btn dash-load', dataset: { name: n }, onclick: () => loadDashboard(n) }, n), ' ',
      h('button', { class: 'btn danger', 'aria-label': `delete dashboard ${n}`, onclick: async () => {
        try { await api.deleteDashboard(n); openDashboards(); } catch (e) { $('#dash-msg').textContent = e.message; }
      } }, '✕'))));
    if (!names.length) list.replaceChildren(h('li', { class: 'dim' }, 'no saved dashboards yet'));
    $('#dash-save').disabled = false;
  } catch (e) {
    list.replaceChildren();
    $('#dash-msg').textContent = e.status === 503 || e.status === 404 ? `This agent keeps no dashboards: ${e.message}` : e.message;
    $('#dash-save').disabled = e.status === 503 || e.status === 404;
  }
}

async function saveDashboard(ev) {
  ev.preventDefault();
  const name = $('#dash-name').value.trim();
  if (!/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$/.test(name)) { $('#dash-msg').textContent = 'a name is 1–64 of letters, digits, _ - . (not starting with .)'; return; }
  stateChanged();
  try {
    await api.saveDashboard(name, { version: 1, hash: hashOf(), title: name, saved: nowSec() });
    $('#dash-msg').textContent = `saved ${name}`;
    openDashboards();
    $('#dash-msg').textContent = `saved ${name}`;
  } catch (e) { $('#dash-msg').textContent = e.message; }
}

async function loadDashboard(name) {
  try {
    const d = await api.dashboard(name);
    if (!d || typeof d.hash !== 'string' || !d.hash.startsWith('#/')) throw new Error(`dashboard ${name} holds no view`);
    $('#dash-dialog').close();
    location.hash = d.hash;
  } catch (e) { $('#dash-msg').textContent = e.message; }
}

// ---- the loop ----------------------------------------------------------------

let ticking = false;
async function refreshAll(force) {
  if (ticking || app.stopped) return;
  ticking = true;
  try {
    if (!app.catalogue) { await start(); return; }
    if (!app.tm.live && !force) return;
    if (app.page === 'host' && app.overview) await app.overview.refresh();
    else {
      const t0 = performance.now();
      const live = allCharts().filter((c) => c.visible);
      await Promise.all(live.map((c) => c.refresh()));
      // how long a refresh of every chart on screen takes (bench/web.sh)
      if (live.length && app.tm.live) { app.refreshMs.push({ ms: performance.now() - t0, charts: live.length }); if (app.refreshMs.length > 500) app.refreshMs.shift(); }
    }
  } finally {
    ticking = false;
  }
}

async function start() {
  try {
    app.catalogue = await api.catalogue();
  } catch {
    $('#loading').textContent = connState() === 'token' ? 'waiting for a token…' : 'waiting for the agent…';
    return;
  }
  $('#loading').hidden = true;
  $('#main').hidden = false;
  new CreateForm($('#create'), app.catalogue, (made) => addUserChart(made, true));
  app.overview = new Overview(app, $('#view-host'));
  try { app.vmNames = (await api.vms()).map((v) => v.name); } catch { app.vmNames = []; }
  ticking = false;
  route();
}

// ---- connection and token ----------------------------------------------------

function setConn({ s, detail }) {
  const pill = $('#conn');
  pill.textContent = {
    ok: `agent ${location.host}`,
    unreachable: `agent unreachable, retrying`,
    token: 'token required',
    forbidden: `forbidden${detail ? `: ${detail}` : ''}`,
  }[s];
  pill.className = `conn ${s}`;
  document.body.dataset.conn = s;
  $('#banner').hidden = s === 'ok';
  $('#banner').textContent = s === 'unreachable'
    ? `The agent at ${location.host} does not answer (${detail || 'network error'}). Data on screen is stale; retrying every 2 s.`
    : s === 'token' ? 'The agent wants a bearer token. Enter it to continue (kept in this tab only).'
      : s === 'forbidden' ? `The agent refused this token: ${detail || 'forbidden'}.` : '';
  if (s === 'token') {
    // nothing is polled until a token is given: no 401 every second
    app.seen401 = true;
    app.stopped = true;
    askToken(detail);
  }
}

function askToken(detail) {
  const dlg = $('#token-dialog');
  if (dlg.open) return;
  $('#token-why').textContent = app.seen401
    ? (getToken() ? `The agent refused the token in use${detail ? `: ${detail}` : '.'}` : `The agent asks for a bearer token${detail ? `: ${detail}` : '.'}`)
    : 'This agent has not asked for a token. One set here is sent with every request from this tab.';
  $('#token-input').value = getToken();
  dlg.showModal();
}

// ---- keys --------------------------------------------------------------------

function keys(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  // keys typed into a control are the control's: Space on a button presses
  // it, never "pause"; arrows on a chart move its cursor
  if (t.closest && t.closest('input, textarea, select, button, a, summary, canvas, [contenteditable]') && e.key !== 'Escape' && e.key !== '?') return;
  if (document.querySelector('dialog[open]')) return;   // Esc closes it natively
  const v = VIEWS.find((x) => x.key === e.key);
  if (v && app.page === 'analytics') { openView(v).catch(() => {}); e.preventDefault(); return; }
  switch (e.key) {
  case 'h': case 'o': location.hash = '#/host'; break;
  case 'a': location.hash = '#/analytics'; break;
  case 'n': location.hash = '#/analytics'; setTimeout(() => { const m = $('#f-metric'); if (m) m.focus(); }, 50); break;
  case ' ': togglePause(); break;
  case '[': scroll(-1); break;
  case ']': scroll(1); break;
  case 'd': openDashboards(); break;
  case '?': $('#help').showModal(); break;
  case 'Escape':
    for (const c of allCharts()) if (c.pinned) c.unpin();
    return;
  default: return;
  }
  e.preventDefault();
}

function init() {
  onState(setConn);
  $('#views').replaceChildren(...VIEWS.map((v) => h('button', { class: 'btn view-btn', id: `view-${v.id}-btn`, title: `key ${v.key}`,
    onclick: () => openView(v).catch((e) => { $('#views-note').textContent = e.message; }) }, h('kbd', {}, v.key), ` ${v.title}`)));
  $('#window').replaceChildren(h('option', { value: '', hidden: true }, 'range'),
    ...WINDOWS.map((w) => h('option', { value: w }, `last ${w >= 60 ? `${w / 60} min` : `${w} s`}`)));
  $('#window').addEventListener('change', (e) => { if (!e.target.value) return; app.lastWindow = Number(e.target.value); setTime({ live: true, window: app.lastWindow }); });
  $('#pause').addEventListener('click', togglePause);
  $('#scroll-back').addEventListener('click', () => scroll(-1));
  $('#scroll-fwd').addEventListener('click', () => scroll(1));
  $('#range-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const f = new Date($('#range-from').value).getTime() / 1000, t = new Date($('#range-to').value).getTime() / 1000;
    if (!Number.isFinite(f) || !Number.isFinite(t) || t <= f) { $('#range-note').textContent = 'want a from before a to'; return; }
    setTime({ live: false, from: f, to: t });
  });
  $('#token-form').addEventListener('submit', (e) => {
    if (e.submitter && e.submitter.value === 'cancel') return;
    setToken($('#token-input').value.trim());
    app.stopped = false;
    forgetList();
    setTimeout(() => refreshAll(true), 0);
  });
  $('#token-dialog').addEventListener('close', () => { if (app.stopped && !getToken()) $('#loading').textContent = 'waiting for a token (use the token button)…'; });
  $('#token-btn').addEventListener('click', () => askToken(''));
  $('#help-btn').addEventListener('click', () => $('#help').showModal());
  $('#dash-btn').addEventListener('click', openDashboards);
  $('#dash-form').addEventListener('submit', saveDashboard);
  document.addEventListener('keydown', keys);
  window.addEventListener('hashchange', () => { if (location.hash !== hashOf()) route(); });
  window.addEventListener('resize', () => { for (const c of allCharts()) c.draw(); });
  setTime(app.tm, true);
  route();
  setInterval(() => { if (document.body.dataset.conn !== 'unreachable') refreshAll(false); }, 1000);
  setInterval(() => { if (document.body.dataset.conn === 'unreachable') refreshAll(true); }, 2000);
}

init();
window.kvmscope = app;   // for the console and for tests
window.kvmscopeUtil = util;
