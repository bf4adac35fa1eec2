// The landing page: every VM of the host with sparklines of its exits,
// interrupts, disk ops and NIC bytes; the kvmstat table per vCPU with the
// newest final second and its history; the fleet's hosts when this agent
// aggregates peers. A VM's name opens its own page.
import { api } from './api.js';
import { h, fmtCount, fmtTime, splitKey, fitCanvas, setText } from './util.js';
import { SeriesStore } from './data.js';
import { ensureInstr, dropInstr } from './instr.js';

const CLASSES = ['haltx', 'irqx', 'irqwx', 'iox', 'mmiox', 'other'];
export const SPARKS = [
  { id: 'exits', label: 'exits/s', spec: { module: 'vm', stat: 'exits', decomposition: ['vm'] } },
  { id: 'irqs', label: 'irqs/s', spec: { module: 'vm', stat: 'irqs', decomposition: ['vm'] } },
  { id: 'disk', label: 'disk ops/s', spec: { module: 'vm', stat: 'disk_ops', decomposition: ['vm'] } },
  { id: 'nic', label: 'NIC bytes/s', spec: { module: 'vm', stat: 'nic_bytes', decomposition: ['vm'] } },
];
const STAT = {
  exits: { module: 'vm', stat: 'exits', decomposition: ['vm', 'vcpu', 'class'] },
  irqs: { module: 'vm', stat: 'irqs', decomposition: ['vm', 'vcpu'] },
};

// Draws values (null: no final value) as a sparkline into canvas.
export function sparkline(canvas, values, color) {
  const w = 120, hh = 26;
  const ctx = fitCanvas(canvas, w, hh);
  ctx.clearRect(0, 0, w, hh);
  let max = 0;
  for (const v of values) if (v !== null && v > max) max = v;
  ctx.strokeStyle = '#2a313b';
  ctx.beginPath(); ctx.moveTo(0, hh - 0.5); ctx.lineTo(w, hh - 0.5); ctx.stroke();
  if (!values.length) return;
  ctx.strokeStyle = color; ctx.lineWidth = 1.5;
  ctx.beginPath();
  let pen = false;
  values.forEach((v, i) => {
    const x = (i / Math.max(1, values.length - 1)) * (w - 2) + 1;
    if (v === null) { pen = false; return; }
    const y = hh - 2 - (max ? (v / max) * (hh - 5) : 0);
    if (pen) ctx.lineTo(x, y); else { ctx.moveTo(x, y); pen = true; }
  });
  ctx.stroke();
  canvas.dataset.max = String(max);
  canvas.dataset.last = String(values.length ? values[values.length - 1] : '');
}

export class Overview {
  constructor(app, root) {
    this.app = app;
    this.root = root;
    this.stores = {};
    this.busy = false;
    this.vmBody = h('tbody');
    this.statBody = h('tbody');
    this.peerBody = h('tbody');
    this.vmNote = h('span', { class: 'dim' }, 'loading…');
    this.statNote = h('span', { class: 'dim' }, 'loading…');
    this.peerNote = h('span', { class: 'dim' }, 'loading…');
    this.peerCard = h('section', { class: 'card', id: 'fleet-card', 'aria-labelledby': 'fleet-h' },
      h('header', {}, h('h2', { id: 'fleet-h' }, 'Fleet'), this.peerNote),
      h('table', { class: 'grid', id: 'peer-table' },
        h('thead', {}, h('tr', {}, ['host', 'state', 'last answer', 'instrumentations', 'last error'].map((c) => h('th', { scope: 'col' }, c)))), this.peerBody));
    root.replaceChildren(
      h('section', { class: 'card', 'aria-labelledby': 'vms-h' },
        h('header', {}, h('h2', { id: 'vms-h' }, 'Virtual machines'), this.vmNote),
        h('div', { class: 'tscroll' }, h('table', { class: 'grid', id: 'vm-table' },
          h('thead', {}, h('tr', {}, ['VM', 'VMID', 'UUID', 'pid', 'vCPUs', ...SPARKS.map((s) => s.label), 'disks', 'NICs'].map((c) => h('th', { scope: 'col' }, c)))),
          this.vmBody))),
      h('section', { class: 'card', 'aria-labelledby': 'kvmstat-h' },
        h('header', {}, h('h2', { id: 'kvmstat-h' }, 'kvmstat: per vCPU, newest final second'), this.statNote),
        h('div', { class: 'tscroll' }, h('table', { class: 'grid num', id: 'kvmstat-table' },
          h('thead', {}, h('tr', {}, ['VM', 'vCPU', 'tid', 'exits/s', ...CLASSES, 'irqs/s', 'exits history'].map((c) => h('th', { scope: 'col' }, c)))),
          this.statBody))),
      this.peerCard);
  }

  async store(which, spec) {
    if (this.stores[which]) return this.stores[which];
    const instr = await ensureInstr(spec);
    this.stores[which] = new SeriesStore(instr);
    this.stores[which].spec = spec;
    return this.stores[which];
  }

  span() {
    const tm = this.app.time();
    const any = Object.values(this.stores)[0];
    const to = tm.live ? (any ? any.newestFinal(Date.now() / 1000) : Math.floor(Date.now() / 1000) - 3) : tm.to - 1;
    const n = Math.min(tm.live ? tm.window : tm.to - tm.from, 600);
    return { from: to - n + 1, to };
  }

  async refresh() {
    if (this.busy) return;
    this.busy = true;
    try {
      this.vms = await api.vms();
      const all = [...SPARKS.map((s) => [s.id, s.spec]), ...Object.entries(STAT).map(([k, s]) => [`stat-${k}`, s])];
      const stores = await Promise.all(all.map(([k, s]) => this.store(k, s)));
      const sp = this.span();
      await Promise.all(stores.map(async (st) => {
        try { await st.ensure(sp.from, sp.to, Date.now() / 1000, this.app.time().live); } catch (e) {
          if (e.status === 404) { dropInstr(st.spec); for (const [k, v] of Object.entries(this.stores)) if (v === st) delete this.stores[k]; }
          throw e;
        }
      }));
      this.drawVms(this.span());
      this.drawStat(this.span());
      setText(this.statNote, `second ${fmtTime(this.span().to)} (final) · instrumentations ${Object.values(this.stores).map((s) => `#${s.id}`).join(' ')}`);
      this.statNote.className = 'dim';
    } catch (e) {
      setText(this.statNote, e.message);
      this.statNote.className = 'err';
    } finally {
      this.busy = false;
    }
    this.refreshPeers();
  }

  // key -> values over the span, from a store decomposed by vm
  perVm(store, sp) {
    const out = new Map();
    const pts = store.range(sp.from, sp.to);
    const n = sp.to - sp.from + 1;
    for (const [t, v] of pts) {
      for (const [k, x] of Object.entries(v || {})) {
        if (!out.has(k)) out.set(k, new Array(n).fill(0));
        out.get(k)[t - sp.from] += x;
      }
    }
    // a second not (yet) known is a gap, not a zero
    for (const arr of out.values()) for (let i = 0; i < n; i++) if (!store.points.has(sp.from + i)) arr[i] = null;
    return out;
  }

  drawVms(sp) {
    const list = Array.isArray(this.vms) ? this.vms : [];
    setText(this.vmNote, list.length ? `${list.length} VM${list.length > 1 ? 's' : ''} · last ${sp.to - sp.from + 1} s` : 'no VMs found on this host');
    const series = Object.fromEntries(SPARKS.map((s) => [s.id, this.stores[s.id] ? this.perVm(this.stores[s.id], sp) : new Map()]));
    const thing = (x) => (typeof x === 'string' ? x : x && (x.name || x.path || x.dev || x.device || x.tap || JSON.stringify(x)));
    const names = list.map((v) => v.name);
    if (this.vmSig !== names.join('\u0001')) {
      this.vmSig = names.join('\u0001');
      this.vmRows = new Map();
      this.vmBody.replaceChildren(...list.map((vm) => {
        const cells = SPARKS.map((s) => {
          const c = h('canvas', { class: 'spark', role: 'img', dataset: { spark: s.id } });
          const v = h('span', { class: 'sval' });
          return { id: s.id, c, v, td: h('td', { class: 'sparkcell' }, c, v) };
        });
        const tr = h('tr', { dataset: { vm: vm.name } },
          h('th', { scope: 'row', class: 'b' }, h('a', { href: `#/vm/${encodeURIComponent(vm.name)}`, class: 'vmlink' }, vm.name)),
          h('td', {}, vm.vmid || '–'), h('td', { class: 'mono' }, vm.uuid || '–'), h('td', {}, vm.pid),
          h('td', {}, (vm.vcpus || []).map((c) => `${c.index}:${c.tid}`).join(' ') || '–'),
          cells.map((c) => c.td),
          h('td', {}, (vm.disks || []).map(thing).join(', ') || '–'),
          h('td', {}, (vm.nics || []).map(thing).join(', ') || '–'));
        this.vmRows.set(vm.name, cells);
        return tr;
      }));
    }
    const colors = { exits: '#5fb3ff', irqs: '#ffb86b', disk: '#7ee787', nic: '#d2a8ff' };
    for (const [name, cells] of this.vmRows || []) {
      for (const c of cells) {
        const vals = series[c.id].get(name) || new Array(sp.to - sp.from + 1).fill(null).map((_, i) => (this.stores[c.id] && this.stores[c.id].points.has(sp.from + i) ? 0 : null));
        sparkline(c.c, vals, colors[c.id]);
        const last = vals.length ? vals[vals.length - 1] : null;
        setText(c.v, last === null ? '–' : fmtCount(last));
        c.c.setAttribute('aria-label', `${name} ${SPARKS.find((s) => s.id === c.id).label} over the last ${vals.length} s, newest ${last === null ? 'unknown' : last}`);
      }
    }
  }

  drawStat(sp) {
    const ex = this.stores['stat-exits'], irq = this.stores['stat-irqs'];
    const newest = (st) => (st && st.points.has(sp.to) ? st.points.get(sp.to) : null);
    const rows = new Map();
    const row = (vm, vcpu) => {
      const k = `${vm}\0${vcpu}`;
      if (!rows.has(k)) rows.set(k, { vm, vcpu: String(vcpu), tid: '', total: 0, cls: {}, irqs: 0, hist: [] });
      return rows.get(k);
    };
    for (const vm of Array.isArray(this.vms) ? this.vms : []) for (const c of vm.vcpus || []) row(vm.name, c.index).tid = c.tid;
    for (const [k, v] of Object.entries(newest(ex) || {})) {
      const [vm, vcpu, cls] = splitKey(k, 3);
      const r = row(vm, vcpu);
      r.total += v;
      r.cls[cls] = (r.cls[cls] || 0) + v;
    }
    for (const [k, v] of Object.entries(newest(irq) || {})) { const [vm, vcpu] = splitKey(k, 2); row(vm, vcpu).irqs += v; }
    // history: exits per second of each vCPU over the span
    for (const r of rows.values()) r.hist = new Array(sp.to - sp.from + 1).fill(null);
    if (ex) {
      for (let t = sp.from; t <= sp.to; t++) {
        if (!ex.points.has(t)) continue;
        for (const r of rows.values()) r.hist[t - sp.from] = 0;
        for (const [k, v] of Object.entries(ex.points.get(t) || {})) {
          const [vm, vcpu] = splitKey(k, 3);
          const r = rows.get(`${vm}\0${vcpu}`);
          if (r) r.hist[t - sp.from] += v;
        }
      }
    }
    const sorted = [...rows.values()].sort((a, b) => (a.vm < b.vm ? -1 : a.vm > b.vm ? 1 : Number(a.vcpu) - Number(b.vcpu)));
    const known = !!newest(ex) || (ex && ex.points.has(sp.to));
    const sig = sorted.map((r) => `${r.vm}\0${r.vcpu}`).join('\u0001');
    if (this.statSig !== sig) {
      this.statSig = sig;
      this.statBody.replaceChildren(...sorted.map((r) => h('tr', { dataset: { vm: r.vm, vcpu: r.vcpu } },
        h('th', { scope: 'row', class: 'b' }, h('a', { href: `#/vm/${encodeURIComponent(r.vm)}` }, r.vm)), h('td', {}, r.vcpu), h('td', { class: 'dim' }, r.tid || '–'),
        h('td', { class: 'b' }), CLASSES.map(() => h('td', {})), h('td', {}), h('td', { class: 'sparkcell' }, h('canvas', { class: 'spark', role: 'img' })))));
      if (!sorted.length) this.statBody.replaceChildren(h('tr', {}, h('td', { colspan: 12, class: 'dim' }, 'no vCPUs yet')));
    }
    const trs = this.statBody.querySelectorAll('tr[data-vm]');
    sorted.forEach((r, i) => {
      const tds = trs[i].children;
      const put = (td, v) => { setText(td, known ? fmtCount(v || 0) : '–'); td.classList.toggle('zero', known && !v); };
      put(tds[3], r.total);
      CLASSES.forEach((c, j) => put(tds[4 + j], r.cls[c]));
      put(tds[10], r.irqs);
      const cv = tds[11].firstChild;
      sparkline(cv, r.hist, '#5fb3ff');
      cv.setAttribute('aria-label', `exits per second of ${r.vm} vCPU ${r.vcpu} over the last ${r.hist.length} s`);
    });
  }

  // GET /ca/peers: an array of peers (today), or {bus, hosts: [...]}; a 404
  // (no such route) or 403 (a tenant) hides the card.
  async refreshPeers() {
    const now = Date.now();
    if (this.peersAt && now - this.peersAt < 5000) return;
    this.peersAt = now;
    let res;
    try { res = await api.peers(); } catch (e) {
      this.peerCard.hidden = e.status === 404 || e.status === 403 || e.status === 401;
      setText(this.peerNote, `fleet status unavailable: ${e.message}`);
      return;
    }
    const hosts = Array.isArray(res) ? res : res && Array.isArray(res.hosts) ? res.hosts : [];
    const bus = res && !Array.isArray(res) ? res.bus : null;
    this.peerCard.hidden = false;
    const busText = bus ? ` · bus ${typeof bus === 'string' ? bus : bus.url || bus.address || bus.state || JSON.stringify(bus)}` : '';
    setText(this.peerNote, hosts.length ? `${hosts.length} host${hosts.length > 1 ? 's' : ''}${busText}` : `this agent aggregates no other hosts${busText}`);
    const when = (t) => (typeof t === 'number' ? fmtTime(t > 1e11 ? t / 1000 : t) : t || '–');
    this.peerBody.replaceChildren(...hosts.map((p) => {
      const state = p.state || p.status || (p.up === true ? 'up' : p.up === false ? 'down' : '?');
      return h('tr', { dataset: { host: p.address || p.host || p.hostname || p.name || '' } },
        h('td', { class: 'b' }, p.address || p.host || p.hostname || p.name || '?'),
        h('td', { class: `state ${state}` }, state),
        h('td', {}, when(p.last_success || p.last_seen)),
        h('td', {}, p.instrumentations === undefined ? '–' : String(p.instrumentations)),
        h('td', { class: p.last_error ? 'err' : 'dim' }, p.last_error || '–'));
    }));
  }
}
