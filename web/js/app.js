// kvmscope web UI: wires the connection state, the tabs, the host view, the
// create form, ready-made views and the live panels together.
import { api, onState, getToken, setToken } from './api.js';
import { h } from './util.js';
import { Panel } from './panel.js';
import { HostView, isHostInstr } from './host.js';
import { CreateForm } from './create.js';

const VIEWS = [
  { key: '1', id: 'when', title: 'What runs when inside each second', specs: [
    { module: 'vm', stat: 'irqs', decomposition: ['vector', 'subsecond'] },
    { module: 'vm', stat: 'samples', decomposition: ['vcpu', 'subsecond'] }] },
  { key: '2', id: 'exits', title: 'Which VM is exiting and why', specs: [
    { module: 'vm', stat: 'exits', decomposition: ['vm', 'reason'] }] },
  { key: '3', id: 'disk', title: 'Disk layout over time', specs: [
    { module: 'vm', stat: 'disk_ops', decomposition: ['disk', 'offset'] }] },
  { key: '4', id: 'procs', title: 'Guest processes', specs: [
    { module: 'vm', stat: 'samples', decomposition: ['mmuctx'] }] },
];

const app = {
  catalogue: null,
  panels: new Map(),
  defaultWindow: 300,
  paused: false,
  tab: 'analytics',
  host: null,
  list: [],
};

const $ = (sel) => document.querySelector(sel);

function setConn({ s, detail }) {
  const pill = $('#conn');
  const text = {
    ok: `agent ${location.host}`,
    unreachable: `agent unreachable at ${location.host} — retrying`,
    token: 'token required',
    forbidden: `forbidden${detail ? `: ${detail}` : ''}`,
  }[s];
  pill.textContent = text;
  pill.className = `conn ${s}`;
  document.body.dataset.conn = s;
  $('#banner').hidden = s === 'ok';
  $('#banner').textContent = s === 'unreachable'
    ? `The agent at ${location.host} does not answer (${detail || 'network error'}). Data on screen is stale; retrying every 2 s.`
    : s === 'token' ? 'The agent wants a bearer token. Enter it to continue (kept in this tab only).'
      : s === 'forbidden' ? `The agent refused this token: ${detail || 'forbidden'}.` : '';
  if (s === 'token') askToken(detail);
}

function askToken(detail) {
  const dlg = $('#token-dialog');
  if (dlg.open) return;
  $('#token-why').textContent = getToken()
    ? `The agent refused the token in use${detail ? `: ${detail}` : '.'}`
    : detail || 'This agent runs with a token file.';
  $('#token-input').value = getToken();
  dlg.showModal();
}

function sameSpec(i, s) {
  return i.module === s.module && i.stat === s.stat &&
    (i.decomposition || []).join() === s.decomposition.join() &&
    (!i.predicate || !Object.keys(i.predicate).length);
}

function addPanel(instr, focus) {
  const id = String(instr.id);
  if (app.panels.has(id)) {
    if (focus) app.panels.get(id).el.scrollIntoView({ block: 'nearest' });
    return app.panels.get(id);
  }
  const p = new Panel(app, instr);
  app.panels.set(id, p);
  $('#panels').prepend(p.el);
  $('#nopanels').hidden = true;
  p.refresh(true);
  if (focus) p.el.scrollIntoView({ block: 'nearest' });
  return p;
}

app.deletePanel = async (p) => {
  try {
    await api.remove(p.id);
  } catch (e) {
    if (e.status !== 404) { p.setStatus(`delete failed: ${e.message}`, 'err'); return; }
  }
  app.lostPanel(p);
};
app.lostPanel = (p) => {
  setTimeout(() => {
    p.el.remove();
    app.panels.delete(p.id);
    $('#nopanels').hidden = app.panels.size > 0;
  }, p.el.isConnected && p.status.classList.contains('err') ? 4000 : 0);
};

async function openView(v) {
  setTab('analytics');
  const list = await api.list();
  for (const s of [...v.specs].reverse()) {
    let instr = list.find((i) => sameSpec(i, s));
    if (!instr) instr = await api.create({ ...s, granularity: 1, 'retention-time': 600 });
    addPanel(instr, true);
  }
}

function setTab(t) {
  app.tab = t;
  document.querySelectorAll('.tab').forEach((b) => b.classList.toggle('on', b.dataset.tab === t));
  document.querySelectorAll('.view').forEach((v) => { v.hidden = v.id !== `view-${t}`; });
  history.replaceState(null, '', `#${t}`);
  tick(true);
}

function setPaused(p) {
  app.paused = p;
  $('#pause').textContent = p ? 'resume all (space)' : 'pause all (space)';
  $('#pause').classList.toggle('on', p);
  if (app.host) app.host.paused = p;
  document.body.classList.toggle('paused', p);
}

let ticking = false;
async function tick(force) {
  if (ticking) return;
  ticking = true;
  try {
    if (!app.catalogue) { await start(); return; }
    if (app.paused && !force) return;
    // The host view always runs, so its instrumentations exist from the start.
    const host = app.host.refresh(() => api.list());
    if (app.tab === 'analytics') for (const p of app.panels.values()) p.refresh(force);
    await host;
  } finally {
    ticking = false;
  }
}

async function start() {
  try {
    app.catalogue = await api.catalogue();
  } catch {
    $('#loading').textContent = 'waiting for the agent…';
    return;
  }
  $('#loading').hidden = true;
  $('#main').hidden = false;
  new CreateForm($('#create'), app.catalogue, (made) => addPanel(made, true));
  app.host = new HostView($('#view-host'));
  try {
    app.list = await api.list();
    for (const i of app.list) if (!isHostInstr(i)) addPanel(i, false);
  } catch { /* the state bar says why */ }
  $('#nopanels').hidden = app.panels.size > 0;
}

function keys(e) {
  if (e.target.closest('input, textarea, select') || e.ctrlKey || e.metaKey || e.altKey) return;
  if ($('#token-dialog').open || ($('#help').open && e.key !== 'Escape' && e.key !== '?')) return;
  const v = VIEWS.find((x) => x.key === e.key);
  if (v) { openView(v).catch(() => {}); e.preventDefault(); return; }
  switch (e.key) {
  case 'h': setTab('host'); break;
  case 'a': setTab('analytics'); break;
  case 'n': setTab('analytics'); $('#f-metric').focus(); break;
  case ' ': setPaused(!app.paused); break;
  case '?': if ($('#help').open) $('#help').close(); else $('#help').showModal(); break;
  case 'Escape':
    for (const p of app.panels.values()) if (p.pinned) p.unpin();
    break;
  default: return;
  }
  e.preventDefault();
}

function init() {
  onState(setConn);
  $('#views').replaceChildren(...VIEWS.map((v) => h('button', { class: 'btn view-btn', id: `view-${v.id}-btn`, title: `key ${v.key}`,
    onclick: () => openView(v).catch((e) => alert(e.message)) }, h('kbd', {}, v.key), ` ${v.title}`)));
  document.querySelectorAll('.tab').forEach((b) => b.addEventListener('click', () => setTab(b.dataset.tab)));
  $('#pause').addEventListener('click', () => setPaused(!app.paused));
  $('#window').addEventListener('change', (e) => {
    app.defaultWindow = Number(e.target.value);
    for (const p of app.panels.values()) {
      if (p.windows.includes(app.defaultWindow)) { p.window = app.defaultWindow; p.winSel.value = String(p.window); }
    }
    tick(true);
  });
  $('#token-form').addEventListener('submit', () => { setToken($('#token-input').value.trim()); setTimeout(() => tick(true), 0); });
  $('#token-btn').addEventListener('click', () => askToken(''));
  $('#help-btn').addEventListener('click', () => $('#help').showModal());
  document.addEventListener('keydown', keys);
  // Only the table's own instrumentations go away with the page; ones the
  // operator made stay on the agent until deleted.
  window.addEventListener('pagehide', () => { if (app.host) app.host.release(); });
  setTab(location.hash === '#host' ? 'host' : 'analytics');
  setInterval(() => tick(false), 1000);
  setInterval(() => { if (document.body.dataset.conn === 'unreachable') tick(true); }, 2000);
}

init();
window.kvmscope = app;   // for the console and for tests
