// One instrumentation on screen, drawn in the browser from the agent's
// per-second raw values (kept in a SeriesStore, fetched incrementally):
//   no decomposition          -> a line
//   discrete decomposition    -> stacked areas (optionally percent of total)
//   numeric decomposition     -> a heatmap (linear or log y, y range, rank or
//                                linear intensity with its legend, keys in
//                                CA's hues, avg/p95 overlays, cell details)
// Time is the app's: a live window ending at the newest final second, or an
// absolute range; drag to zoom, a crosshair shared by every chart.
import {
  h, fmtCount, unitFormatter, fmtTime, niceStep, niceStepBinary, fitCanvas, keyColor,
  distinctHue, cellRgb, PLOT_BG, setText, download,
} from './util.js';
import { SeriesStore, bucketsOf, bucketStats } from './data.js';
import { getToken } from './api.js';

export const MARGIN = { l: 80, r: 16, t: 10, b: 30 };
const MAX_SERIES = 12;

export function predicateText(p) {
  if (!p || typeof p !== 'object' || !Object.keys(p).length) return '';
  const [op, arg] = Object.entries(p)[0];
  if (op === 'and' || op === 'or') return arg.map((x) => `(${predicateText(x)})`).join(` ${op} `);
  const sym = { eq: '==', ne: '!=', lt: '<', le: '<=', gt: '>', ge: '>=' }[op] || op;
  return `${arg[0]} ${sym} ${JSON.stringify(arg[1])}`;
}

// Default view settings of a panel; what the URL and dashboards keep.
export function defaultView() {
  return { sel: [], mode: 'selected', log: null, ymin: null, ymax: null, pct: false, hidden: [], avg: false, p95: false, coloring: 'rank' };
}

let serial = 0;

export class Chart {
  // app: catalogue, time(), crosshair, zoom(), stateChanged(); opts: { key,
  // title, height, onRemove, view }
  constructor(app, instr, opts = {}) {
    this.app = app;
    this.instr = instr;
    this.id = String(instr.id);
    this.key = opts.key || `i${this.id}`;
    this.uid = `c${++serial}`;
    this.title = opts.title || null;
    this.plotH = opts.height || 200;
    this.onRemove = opts.onRemove || null;
    this.view = { ...defaultView(), ...(opts.view || {}) };
    this.store = new SeriesStore(instr);
    this.visible = true;
    this.busy = false;
    this.cursor = null;       // keyboard cell: { col, row }
    this.pinned = null;       // heatmap: { t, row } in data coordinates
    this.hover = null;        // { t, row, mx, my }
    this.keyIndex = new Map(); // key -> stable colour index
    const decomp = instr.decomposition || [];
    const fields = app.catalogue.fields || {};
    const types = app.catalogue.types || {};
    const arity = (f) => { const fd = fields[f]; const t = fd && types[fd.type]; return t ? t.arity : 'discrete'; };
    this.numField = decomp.find((f) => arity(f) === 'numeric') || null;
    this.discFields = decomp.filter((f) => f !== this.numField);
    this.kind = this.numField ? 'heatmap' : this.discFields.length ? 'stacked' : 'line';
    this.numDesc = this.numField ? fields[this.numField] || {} : null;
    this.numType = this.numDesc ? types[this.numDesc.type] || {} : {};
    this.fmtY = this.numField ? unitFormatter(this.numDesc, types) : fmtCount;
    this.isBytes = this.numType.unit === 'bytes';
    // latency spans decades: log by default; offsets and sizes linear
    if (this.view.log === null) this.view.log = !!(this.numDesc && this.numType.unit === 'seconds');
    const m = (app.catalogue.metrics || []).find((x) => x.module === instr.module && x.stat === instr.stat);
    this.unit = (m && m.unit) || 'ops';
    this.build();
  }

  metricName() { return `${this.instr.module}.${this.instr.stat}`; }

  describe() {
    const d = (this.instr.decomposition || []).join(', ');
    return this.title || `${this.metricName()}${d ? ` by ${d}` : ''}`;
  }

  build() {
    const i = this.instr;
    const pred = predicateText(i.predicate);
    const ctrls = [];
    const chk = (label, prop, title) => h('label', { class: 'chk', title },
      h('input', { type: 'checkbox', checked: !!this.view[prop], dataset: { prop }, onchange: (e) => { this.view[prop] = e.target.checked; this.changed(); } }), label);
    if (this.kind === 'heatmap') {
      if (this.discFields.length) {
        this.modeSel = h('select', { 'aria-label': 'key colouring', title: 'how keys are coloured', onchange: () => { this.view.mode = this.modeSel.value; this.changed(); } },
          [['selected', 'selected keys in hues'], ['isolate', 'isolate selected'], ['exclude', 'exclude selected'], ['all', 'every key in a hue']]
            .map(([v, l]) => h('option', { value: v, selected: this.view.mode === v }, l)));
        ctrls.push(this.modeSel);
      }
      const sub = this.numDesc.type === 'subsecond';
      if (!sub) ctrls.push(chk('log', 'log', 'logarithmic y axis'));
      const num = (prop, label) => h('input', { type: 'number', class: 'yr', step: 'any', min: 0, placeholder: 'auto', 'aria-label': `${label} (${this.rawUnit()})`, title: `${label} in ${this.rawUnit()} (empty: auto)`,
        value: this.view[prop] === null ? '' : this.view[prop],
        onchange: (e) => { const v = e.target.value.trim(); this.view[prop] = v === '' || !Number.isFinite(Number(v)) ? null : Number(v); this.changed(); } });
      if (!sub) ctrls.push(h('span', { class: 'yrange' }, 'y ', num('ymin', 'y min'), '–', num('ymax', 'y max')));
      this.colSel = h('select', { 'aria-label': 'intensity', title: 'cell intensity: rank (CA) or linear in the count', onchange: () => { this.view.coloring = this.colSel.value; this.changed(); } },
        h('option', { value: 'rank', selected: this.view.coloring === 'rank' }, 'rank'), h('option', { value: 'linear', selected: this.view.coloring === 'linear' }, 'linear'));
      ctrls.push(this.colSel, chk('avg', 'avg', 'average overlay'), chk('p95', 'p95', '95th percentile overlay'));
    } else if (this.kind === 'stacked') {
      ctrls.push(chk('% of total', 'pct', 'each second as a share of its total'));
    }
    this.exportBox = h('details', { class: 'export' }, h('summary', { class: 'btn', title: 'export this chart' }, 'export'),
      h('div', { class: 'emenu' },
        h('button', { class: 'btn', dataset: { export: 'png' }, onclick: () => this.exportPng() }, 'PNG'),
        h('button', { class: 'btn', dataset: { export: 'csv' }, onclick: () => this.exportCsv() }, 'CSV'),
        h('button', { class: 'btn', dataset: { export: 'json' }, onclick: () => this.exportJson() }, 'JSON'),
        h('button', { class: 'btn', dataset: { export: 'curl' }, onclick: () => this.exportCurl() }, 'copy as curl')),
      this.curlOut = h('input', { class: 'curl', readonly: true, hidden: true, 'aria-label': 'curl command for this chart' }));
    ctrls.push(this.exportBox);
    if (this.onRemove) ctrls.push(h('button', { class: 'btn danger', title: `delete instrumentation #${this.id}`, 'aria-label': `delete instrumentation ${this.id}`, onclick: () => this.onRemove(this) }, '✕'));

    this.canvas = h('canvas', { class: 'plot', tabindex: '0', role: 'img' });
    this.status = h('div', { class: 'pstatus' }, 'loading…');
    this.legend = h('div', { class: 'legend', role: 'group', 'aria-label': 'keys' });
    this.scale = h('div', { class: 'iscale', hidden: this.kind !== 'heatmap' });
    this.details = h('div', { class: 'details', 'aria-live': 'polite' });
    this.live = h('div', { class: 'sr-only', 'aria-live': 'polite' });
    this.tip = h('div', { class: 'tip', hidden: true });
    this.xhair = h('div', { class: 'xhair', hidden: true });
    this.zoomBox = h('div', { class: 'zoombox', hidden: true });
    this.titleEl = h('h3', { class: 'ptitle', id: `${this.uid}-t` },
      h('span', { class: 'pid' }, `#${this.id}`), ' ', h('b', {}, this.describe()),
      pred ? h('span', { class: 'pred', title: JSON.stringify(i.predicate) }, ` where ${pred}`) : null);
    this.el = h('section', { class: `panel ${this.kind}`, id: `panel-${this.key}`, 'aria-labelledby': `${this.uid}-t`,
      dataset: { id: this.id, key: this.key, kind: this.kind, metric: this.metricName() } },
    h('header', {}, this.titleEl, h('div', { class: 'pctrl' }, ctrls)),
    h('div', { class: 'pbody' },
      h('div', { class: 'cwrap' }, this.canvas, this.xhair, this.zoomBox, this.status, this.tip),
      h('div', { class: 'side' }, this.scale, this.legend)),
    this.details, this.live);
    this.canvas.setAttribute('aria-label', this.ariaLabel());
    this.canvas.addEventListener('mousemove', (e) => this.onMove(e));
    this.canvas.addEventListener('mouseleave', () => { this.tip.hidden = true; this.hover = null; this.app.crosshair(null); });
    this.canvas.addEventListener('mousedown', (e) => this.onDown(e));
    this.canvas.addEventListener('keydown', (e) => this.onKey(e));
    this.canvas.addEventListener('focus', () => { if (!this.cursor && this.grid) this.cursor = { col: this.grid.n - 1, row: 0 }; });
  }

  ariaLabel() {
    const what = this.kind === 'heatmap' ? `heatmap of ${(this.numDesc && this.numDesc.label) || this.numField} over time`
      : this.kind === 'stacked' ? `stacked chart of ${this.unit} per second by ${this.discFields.join(', ')}` : `line of ${this.unit} per second`;
    return `${this.describe()}: ${what}. Arrow keys move between ${this.kind === 'heatmap' ? 'cells' : 'seconds'}${this.kind === 'heatmap' ? ', Enter pins the cell\'s details, Escape closes them' : ''}.`;
  }

  rawUnit() {
    if (this.numDesc && this.numDesc.type === 'subsecond') return 'ms';
    if (this.numType.unit === 'seconds' && this.numType.power === -9) return 'ns';
    return this.numType.unit || 'units';
  }

  changed() { this.pinned = null; this.draw(); this.app.stateChanged(); }

  setStatus(text, cls) {
    setText(this.status, text || '');
    this.status.className = `pstatus ${cls || ''}`;
    this.status.hidden = !text;
  }

  plotSize() {
    const w = Math.max(260, Math.floor(this.canvas.parentElement.clientWidth || 600));
    return { w, h: this.plotH + MARGIN.t + MARGIN.b, pw: w - MARGIN.l - MARGIN.r, ph: this.plotH };
  }

  // The slots on screen: [from, to] (slot starts) from the app's time.
  slots() {
    const g = this.store.gran;
    const tm = this.app.time();
    let to, from;
    if (tm.live) {
      to = this.store.newestFinal(Date.now() / 1000);
      const edge = this.app.liveEdge ? this.app.liveEdge() : Infinity;
      if (edge < to + g) to = Math.floor(edge / g) * g - g;
      from = to - Math.floor(tm.window / g) * g + g;
    } else {
      to = Math.floor((tm.to - 1) / g) * g;
      from = Math.floor(tm.from / g) * g;
    }
    return { from, to, n: Math.max(1, Math.round((to - from) / g) + 1), g };
  }

  async refresh() {
    if (!this.visible) return;
    // a change of time while a refresh is out is not lost: it runs again
    if (this.busy) { this.again = true; return; }
    this.busy = true;
    this.again = false;
    try {
      const s = this.slots();
      // bench/web.sh's side-by-side: the whole window again every time, as
      // the UI did before it kept what it had
      if (this.app.benchFullWindow) this.store.points.clear();
      await this.store.ensure(s.from, s.to, Date.now() / 1000, this.app.time().live);
      this.draw();
    } catch (e) {
      if (e.status === 404) this.setStatus(`instrumentation #${this.id} no longer exists on the agent`, 'err');
      else this.setStatus(e.message, 'err');
      if (this.app.lost && e.status === 404) this.app.lost(this);
    } finally {
      this.busy = false;
    }
    if (this.again) this.refresh();
  }

  colorIndex(k) {
    if (!this.keyIndex.has(k)) this.keyIndex.set(k, this.keyIndex.size);
    return this.keyIndex.get(k);
  }

  draw() {
    if (!this.canvas.isConnected) return;
    const s = this.slots();
    const pts = this.store.range(s.from, s.to);
    this.frame = s;
    if (this.kind === 'heatmap') this.drawHeatmap(s, pts); else this.drawSeries(s, pts);
    this.drawCrosshair();
    Object.assign(this.canvas.dataset, { plotX: MARGIN.l, plotY: MARGIN.t, plotW: this.plotSize().pw, plotH: this.plotH, start: s.from, end: s.to + s.g, n: s.n });
  }

  // ---- lines and stacked areas --------------------------------------------

  drawSeries(s, pts) {
    const sz = this.plotSize();
    const ctx = fitCanvas(this.canvas, sz.w, sz.h);
    ctx.clearRect(0, 0, sz.w, sz.h);
    const series = new Map();
    let any = false;
    for (const [t, v] of pts) {
      const i = Math.round((t - s.from) / s.g);
      if (i < 0 || i >= s.n || v === null || v === undefined) continue;
      const obj = typeof v === 'number' ? { '': v } : v;
      for (const [k, x] of Object.entries(obj)) {
        if (typeof x !== 'number') continue;
        if (!series.has(k)) series.set(k, new Float64Array(s.n));
        series.get(k)[i] += x;
        any = true;
      }
    }
    const have = new Uint8Array(s.n);
    for (const [t] of pts) { const i = Math.round((t - s.from) / s.g); if (i >= 0 && i < s.n) have[i] = 1; }
    const totals = [...series.entries()].map(([k, a]) => [k, a.reduce((x, y) => x + y, 0)]);
    totals.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    let keys = totals.map((x) => x[0]);
    if (keys.length > MAX_SERIES) {
      const other = new Float64Array(s.n);
      for (const k of keys.slice(MAX_SERIES - 1)) series.get(k).forEach((v, i) => { other[i] += v; });
      keys = keys.slice(0, MAX_SERIES - 1);
      series.set('(other)', other);
      keys.push('(other)');
    }
    [...keys].sort().forEach((k) => this.colorIndex(k));
    this.colors = new Map(keys.map((k) => [k, this.kind === 'line' ? '#5fb3ff' : keyColor(this.colorIndex(k))]));
    const hidden = new Set(this.view.hidden);
    const shown = keys.filter((k) => !hidden.has(k));
    const total = new Float64Array(s.n);
    for (const k of shown) series.get(k).forEach((v, i) => { total[i] += v; });
    const pct = this.kind === 'stacked' && this.view.pct;
    const stack = new Float64Array(s.n);
    const layers = [];
    for (const k of shown) {
      const base = Float64Array.from(stack);
      series.get(k).forEach((v, i) => { stack[i] += pct ? (total[i] ? (100 * v) / total[i] : 0) : v; });
      layers.push({ k, base, top: Float64Array.from(stack) });
    }
    let ymax = 0;
    stack.forEach((v) => { ymax = Math.max(ymax, v); });
    ymax = pct ? 100 : ymax > 0 ? niceCeil(ymax) : 1;
    const X = (i) => MARGIN.l + ((i + 0.5) / s.n) * sz.pw;
    const Y = (v) => MARGIN.t + sz.ph * (1 - v / ymax);
    const tick = (v) => fmtCount(v).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
    this.axes(ctx, sz, s.from, s.n * s.g, 0, ymax, pct ? (v) => `${tick(v)}%` : tick,
      pct ? '% of total' : `${this.unit} / ${s.g === 1 ? 's' : `${s.g} s`}`, false, null);
    // steps: each second is a slot of its own width, so that a single
    // second is drawn too and no value leaks into its neighbours
    const X0 = (i) => MARGIN.l + (i / s.n) * sz.pw;
    for (const L of layers) {
      // runs of seconds with a final value
      for (let a = 0; a < s.n; a++) {
        if (!have[a]) continue;
        let b = a;
        while (b + 1 < s.n && have[b + 1]) b++;
        ctx.beginPath();
        ctx.moveTo(X0(a), Y(L.top[a]));
        for (let i = a; i <= b; i++) { ctx.lineTo(X0(i), Y(L.top[i])); ctx.lineTo(X0(i + 1), Y(L.top[i])); }
        if (this.kind === 'stacked') {
          for (let i = b; i >= a; i--) { ctx.lineTo(X0(i + 1), Y(L.base[i])); ctx.lineTo(X0(i), Y(L.base[i])); }
          ctx.closePath();
          ctx.globalAlpha = 0.85;
          ctx.fillStyle = this.colors.get(L.k);
          ctx.fill();
          ctx.globalAlpha = 1;
        } else {
          ctx.strokeStyle = this.colors.get(L.k);
          ctx.lineWidth = 1.5;
          ctx.stroke();
        }
        a = b;
      }
    }
    this.grid = { n: s.n, rows: 1, series, keys, X, Y, ymax, have, pct, total };
    this.setStatus(any ? '' : 'no data yet: nothing counted in this window', 'empty');
    this.el.dataset.ready = any ? '1' : '0';
    const lastIdx = (() => { for (let i = s.n - 1; i >= 0; i--) if (have[i]) return i; return -1; })();
    this.el.dataset.newest = lastIdx >= 0 ? String(s.from + lastIdx * s.g) : '';
    this.legendSeries(keys, series, lastIdx);
    this.refreshTip();
  }

  legendSeries(keys, series, lastIdx) {
    if (this.kind === 'line') {
      const arr = series.get('');
      this.legendRows(['total'], () => ({ color: '#5fb3ff', val: arr && lastIdx >= 0 ? fmtCount(arr[lastIdx]) : '–', on: true }), null);
      return;
    }
    const hidden = new Set(this.view.hidden);
    this.legendRows(keys, (k) => ({ color: this.colors.get(k), val: lastIdx >= 0 ? fmtCount(series.get(k)[lastIdx]) : '–', on: !hidden.has(k) }),
      (k) => { const hs = new Set(this.view.hidden); if (hs.has(k)) hs.delete(k); else hs.add(k); this.view.hidden = [...hs]; this.changed(); },
      'hide/show');
  }

  // The legend's rows: rebuilt only when the keys change, so that focus on a
  // key survives every refresh; colours and values are updated in place.
  legendRows(keys, info, onClick, verb) {
    const sig = keys.join('\u0001') + (onClick ? '' : '\u0002');
    if (this.legendSig !== sig) {
      this.legendSig = sig;
      const focused = document.activeElement && this.legend.contains(document.activeElement) ? document.activeElement.dataset.key : null;
      this.legend.replaceChildren(...keys.map((k) => {
        const label = k === '' ? 'total' : k;
        const el = onClick
          ? h('button', { class: 'lkey', dataset: { key: k }, 'aria-pressed': 'false', title: `${label}: click to ${verb}`, onclick: () => onClick(k) })
          : h('span', { class: 'lkey static', dataset: { key: k } });
        el.append(h('i', {}), h('span', { class: 'kname' }, label), h('span', { class: 'kval' }));
        return el;
      }));
      if (!keys.length) this.legend.append(h('span', { class: 'dim' }, 'no keys yet'));
      if (focused !== null) { const b = [...this.legend.children].find((c) => c.dataset.key === focused); if (b) b.focus(); }
    }
    for (const el of this.legend.children) {
      if (!el.dataset || el.dataset.key === undefined) continue;
      const x = info(el.dataset.key);
      const sw = el.firstChild;
      const bg = x.color || 'transparent';
      if (sw.style.background !== bg) sw.style.background = bg;
      sw.classList.toggle('none', !x.color);
      setText(el.lastChild, x.val || '');
      el.classList.toggle('off', !x.on);
      if (el.tagName === 'BUTTON') { el.setAttribute('aria-pressed', x.pressed ? 'true' : 'false'); el.classList.toggle('sel', !!x.pressed); }
      el.classList.toggle('gone', !!x.gone);
    }
  }

  // ---- heatmaps ---------------------------------------------------------

  // y in [ymin, ymax] -> 0..1 up the plot, linear or log
  yScale(ymin, ymax) {
    if (this.view.log && !(this.numDesc.type === 'subsecond')) {
      const a = Math.log10(Math.max(ymin, 1e-9)), b = Math.log10(ymax);
      return { f: (v) => (Math.log10(Math.max(v, 1e-9)) - a) / (b - a), inv: (u) => Math.pow(10, a + u * (b - a)), log: true };
    }
    return { f: (v) => (v - ymin) / (ymax - ymin), inv: (u) => ymin + u * (ymax - ymin), log: false };
  }

  yRange(pts) {
    const d = this.numDesc;
    if (d.type === 'subsecond') return [0, (d.bucketing && d.bucketing.max) || 1000];
    let lo = Infinity, hi = 0;
    for (const [, v] of pts) for (const [[a, b]] of bucketsOf(v)) { if (a > 0 && a < lo) lo = a; if (b > hi) hi = b; }
    if (!Number.isFinite(lo)) lo = 1;
    if (hi <= 0) hi = this.view.log ? 1e6 : 100;
    let ymin, ymax;
    if (this.view.log) {
      ymin = Math.pow(10, Math.floor(Math.log10(lo)));
      ymax = Math.pow(10, Math.ceil(Math.log10(hi)));
      if (ymax <= ymin) ymax = ymin * 10;
    } else {
      ymin = 0;
      ymax = this.isBytes ? Math.pow(2, Math.ceil(Math.log2(hi))) : niceCeil(hi);
    }
    if (this.view.ymin !== null) ymin = this.view.ymin;
    if (this.view.ymax !== null) ymax = this.view.ymax;
    if (this.view.log && ymin <= 0) ymin = Math.min(1, ymax / 10);
    if (ymax <= ymin) ymax = ymin + (this.view.log ? ymin * 9 : 1);
    return [ymin, ymax];
  }

  drawHeatmap(s, pts) {
    const sz = this.plotSize();
    const ctx = fitCanvas(this.canvas, sz.w, sz.h);
    ctx.clearRect(0, 0, sz.w, sz.h);
    const [ymin, ymax] = this.yRange(pts);
    const sc = this.yScale(ymin, ymax);
    const sub = this.numDesc.type === 'subsecond';
    const rows = sub ? Math.min(100, Math.floor(sz.ph / 2)) : Math.min(60, Math.floor(sz.ph / 3));
    const n = s.n;
    // layers: 0 = the rest (hue 21); 1.. = selected keys (CA's hues)
    const keyed = this.discFields.length > 0;
    const present = new Set();
    for (const [, v] of pts) if (v && !Array.isArray(v)) for (const k of Object.keys(v)) present.add(k);
    const presentSorted = [...present].sort();
    const sel = this.view.sel;
    const mode = keyed ? this.view.mode : 'selected';
    const layerOf = (k) => {
      if (!keyed) return 0;
      if (mode === 'all') return 1 + presentSorted.indexOf(k);
      const i = sel.indexOf(k);
      if (mode === 'isolate') return i >= 0 ? 1 + i : -1;
      if (mode === 'exclude') return i >= 0 ? -1 : 0;
      return i >= 0 ? 1 + i : 0;
    };
    const nl = 1 + (mode === 'all' ? presentSorted.length : sel.length);
    const cells = new Float64Array(n * rows * nl);
    const perKey = new Map();  // cell index -> Map(key -> count)
    const colBuckets = Array.from({ length: n }, () => []);
    const have = new Uint8Array(n);
    for (const [t, v] of pts) {
      const col = Math.round((t - s.from) / s.g);
      if (col < 0 || col >= n) continue;
      have[col] = 1;
      if (!v) continue;
      const entries = Array.isArray(v) ? [['', v]] : Object.entries(v);
      for (const [k, buckets] of entries) {
        const layer = layerOf(k);
        if (layer < 0 || !Array.isArray(buckets)) continue;
        for (const b of buckets) {
          const [[lo, hi], c] = b;
          colBuckets[col].push(b);
          // spread the bucket over the rows it spans, by overlap
          let u0 = sc.f(lo), u1 = sc.f(hi);
          if (u1 <= 0 || u0 >= 1) continue;
          if (u1 <= u0) u1 = u0 + 1e-9;
          const r0 = Math.max(0, Math.floor(u0 * rows)), r1 = Math.min(rows - 1, Math.ceil(u1 * rows) - 1);
          for (let r = r0; r <= r1; r++) {
            const ov = Math.min(u1, (r + 1) / rows) - Math.max(u0, r / rows);
            if (ov <= 0) continue;
            const share = c * (ov / (u1 - u0));
            const ci = col * rows + r;
            cells[ci * nl + layer] += share;
            if (keyed) {
              let m = perKey.get(ci);
              if (!m) perKey.set(ci, (m = new Map()));
              m.set(k, (m.get(k) || 0) + share);
            }
          }
        }
      }
    }
    // intensity: rank of the cell's total among the distinct totals (CA's
    // default), or linear in it
    const totals = new Float64Array(n * rows);
    let max = 0;
    const distinct = new Set();
    for (let ci = 0; ci < n * rows; ci++) {
      let t = 0;
      for (let l = 0; l < nl; l++) t += cells[ci * nl + l];
      totals[ci] = t;
      if (t > 0) { max = Math.max(max, t); distinct.add(Math.round(t * 1000) / 1000); }
    }
    const ranks = [...distinct].sort((a, b) => a - b);
    const rankOf = new Map(ranks.map((v, i) => [v, i]));
    const intensity = (t) => (this.view.coloring === 'linear' ? t / max : (rankOf.get(Math.round(t * 1000) / 1000) + 1) / ranks.length);
    const hueOfLayer = (l) => distinctHue(l);
    const img = new ImageData(n, rows);
    for (let col = 0; col < n; col++) {
      for (let r = 0; r < rows; r++) {
        const ci = col * rows + r;
        const p = ((rows - 1 - r) * n + col) * 4;
        const t = totals[ci];
        let rgb = PLOT_BG;
        if (t > 0) {
          const it = intensity(t);
          rgb = [0, 0, 0];
          for (let l = 0; l < nl; l++) {
            const c = cells[ci * nl + l];
            if (!c) continue;
            const cc = cellRgb(hueOfLayer(l), it);
            for (let q = 0; q < 3; q++) rgb[q] += (cc[q] * c) / t;
          }
        }
        img.data[p] = rgb[0]; img.data[p + 1] = rgb[1]; img.data[p + 2] = rgb[2]; img.data[p + 3] = 255;
      }
    }
    const off = document.createElement('canvas');
    off.width = n; off.height = rows;
    off.getContext('2d').putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, MARGIN.l, MARGIN.t, sz.pw, sz.ph);
    this.axes(ctx, sz, s.from, n * s.g, ymin, ymax, this.fmtY, this.numDesc.label || this.numField, true, sc);
    const X = (col) => MARGIN.l + ((col + 0.5) / n) * sz.pw;
    const Yv = (v) => MARGIN.t + sz.ph * (1 - Math.max(0, Math.min(1, sc.f(v))));
    // overlays: a dark casing under a bright line, so they read on any cell
    const stats = colBuckets.map((b) => bucketStats(b));
    const overlay = (get, color, dash) => {
      for (const [w, c] of [[4, '#000'], [2, color]]) {
        ctx.strokeStyle = c; ctx.lineWidth = w; ctx.setLineDash(dash);
        ctx.beginPath();
        let pen = false;
        for (let col = 0; col < n; col++) {
          const v = stats[col].n ? get(stats[col]) : null;
          if (v === null) { pen = false; continue; }
          if (pen) ctx.lineTo(X(col), Yv(v)); else { ctx.moveTo(X(col), Yv(v)); pen = true; }
        }
        ctx.stroke();
      }
      ctx.setLineDash([]);
    };
    if (this.view.avg) overlay((st) => st.avg, '#00d5ff', []);
    if (this.view.p95) overlay((st) => st.pct(0.95), '#ff5cf4', [6, 3]);
    this.grid = { n, rows, cells, totals, perKey, nl, sc, ymin, ymax, stats, have, max, ranks, layerHue: hueOfLayer };
    const mark = (cell, color) => {
      const cw = sz.pw / n, chh = sz.ph / rows;
      ctx.strokeStyle = color; ctx.lineWidth = 2;
      ctx.strokeRect(MARGIN.l + cell.col * cw - 1, MARGIN.t + (rows - 1 - cell.row) * chh - 1, Math.max(3, cw) + 2, Math.max(3, chh) + 2);
    };
    if (this.pinned) {
      const col = Math.round((this.pinned.t - s.from) / s.g);
      if (col >= 0 && col < n) mark({ col, row: this.pinned.row }, '#ffe14d');
      this.showDetails(this.pinned.t, this.pinned.row, true);
    }
    if (this.cursor && document.activeElement === this.canvas) mark(this.cursor, '#fff');
    Object.assign(this.canvas.dataset, { ymin, ymax, rows, log: sc.log ? '1' : '0' });
    const any = totals.some((x) => x > 0);
    this.setStatus(any ? '' : 'no data yet: nothing counted in this window', 'empty');
    this.el.dataset.ready = any ? '1' : '0';
    let lastIdx = -1;
    for (let i = n - 1; i >= 0; i--) if (have[i]) { lastIdx = i; break; }
    this.el.dataset.newest = lastIdx >= 0 ? String(s.from + lastIdx * s.g) : '';
    this.legendHeat(presentSorted, mode);
    this.intensityLegend(max, ranks);
    this.refreshTip();
  }

  legendHeat(present, mode) {
    const sel = this.view.sel;
    const rgb = (hue) => { const c = cellRgb(hue, 1); return `rgb(${c.join(',')})`; };
    if (!this.discFields.length) {
      this.legendRows(['count'], () => ({ color: rgb(distinctHue(0)), on: true }), null);
      return;
    }
    const keys = [...new Set([...sel, ...present])];
    const rest = mode === 'isolate' || mode === 'all' ? [] : [sel.length ? '(the rest)' : '(all keys)'];
    const info = (k) => {
      if (k.startsWith('(')) return { color: rgb(distinctHue(0)), on: true };
      const i = sel.indexOf(k);
      let hue = null;
      if (mode === 'all') hue = distinctHue(1 + present.indexOf(k));
      else if (i >= 0 && mode !== 'exclude') hue = distinctHue(1 + i);
      return { color: hue === null ? null : rgb(hue), on: mode === 'exclude' ? i < 0 : true, pressed: i >= 0, gone: !present.includes(k) };
    };
    this.legendRows([...rest, ...keys], info, (k) => {
      if (k.startsWith('(')) return;
      this.view.sel = sel.includes(k) ? sel.filter((x) => x !== k) : [...sel, k];
      this.changed();
    }, 'select/unselect');
  }

  // The intensity legend: what the lightest and the densest cell mean.
  intensityLegend(max, ranks) {
    const stops = [];
    for (let i = 0; i <= 10; i++) { const c = cellRgb(distinctHue(0), Math.max(0.02, i / 10)); stops.push(`rgb(${c.join(',')}) ${i * 10}%`); }
    const lo = this.view.coloring === 'linear' ? '0' : ranks.length ? fmtCount(round2(ranks[0])) : '–';
    const hi = max ? fmtCount(round2(max)) : '–';
    if (!this.scaleBar) {
      this.scaleBar = h('div', { class: 'ibar' });
      this.scaleLo = h('span', { class: 'ilo' }); this.scaleHi = h('span', { class: 'ihi' });
      this.scaleCap = h('div', { class: 'icap dim' });
      this.scale.replaceChildren(this.scaleCap, this.scaleBar, h('div', { class: 'ilabels' }, this.scaleLo, this.scaleHi));
    }
    this.scaleBar.style.background = `linear-gradient(to right, ${stops.join(',')})`;
    setText(this.scaleCap, `${this.unit} per cell (${this.view.coloring === 'linear' ? 'linear' : 'rank'})`);
    setText(this.scaleLo, lo); setText(this.scaleHi, hi);
    this.scale.dataset.max = String(max);
  }

  // The cell at column col, row row: its time, value range and counts.
  cellInfo(col, row) {
    const g = this.grid;
    if (!g || col < 0 || col >= g.n || row < 0 || row >= g.rows) return null;
    const ci = col * g.rows + row;
    const t = this.frame.from + col * this.frame.g;
    const lo = g.sc.inv(row / g.rows), hi = g.sc.inv((row + 1) / g.rows);
    const keys = g.perKey.get(ci) ? [...g.perKey.get(ci).entries()].sort((a, b) => b[1] - a[1]) : [];
    return { t, col, row, lo, hi, total: g.totals[ci], keys, final: !!g.have[col] };
  }

  detailsBody(c) {
    const g = this.frame.g;
    return h('div', { class: 'dbody', dataset: { total: round2(c.total), bucketMin: c.lo, bucketMax: c.hi, start: c.t } },
      h('div', {}, h('span', { class: 'dim' }, 'time '), `${fmtTime(c.t)} – ${fmtTime(c.t + g)}`),
      h('div', {}, h('span', { class: 'dim' }, `${this.numDesc.label || this.numField} `), `${this.fmtY(c.lo)} – ${this.fmtY(c.hi)}`),
      h('div', {}, h('span', { class: 'dim' }, 'count '), h('b', { class: 'dtotal' }, fmtCount(round2(c.total)))),
      c.keys.length ? h('table', { class: 'dkeys' }, c.keys.map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', { class: 'num' }, fmtCount(round2(v)))))) : null);
  }

  showDetails(t, row, pin) {
    const col = Math.round((t - this.frame.from) / this.frame.g);
    const c = this.cellInfo(col, row);
    if (!pin) return c ? this.detailsBody(c) : null;
    if (!c) {
      // the pinned second scrolled out of the window: say so, keep it pinned
      this.details.replaceChildren(h('div', { class: 'dhead' }, `pinned cell at ${fmtTime(t)} is outside the window `, this.closeBtn()));
    } else {
      this.details.replaceChildren(h('div', { class: 'dhead' }, 'cell details ', this.closeBtn()), this.detailsBody(c));
    }
    this.details.classList.add('open');
    return null;
  }

  closeBtn() { return h('button', { class: 'btn', title: 'close (Esc)', onclick: () => this.unpin() }, 'close'); }

  unpin() {
    this.pinned = null;
    this.details.classList.remove('open');
    this.details.replaceChildren();
    this.draw();
  }

  // ---- pointer and keyboard ------------------------------------------------

  at(e) {
    const r = this.canvas.getBoundingClientRect();
    const sz = this.plotSize();
    const x = e.clientX - r.left - MARGIN.l, y = e.clientY - r.top - MARGIN.t;
    if (!this.grid || x < 0 || y < 0 || x >= sz.pw || y >= sz.ph) return null;
    const col = Math.floor((x / sz.pw) * this.grid.n);
    const row = this.grid.rows - 1 - Math.floor((y / sz.ph) * this.grid.rows);
    return { col, row, t: this.frame.from + col * this.frame.g, mx: e.clientX - r.left, my: e.clientY - r.top, x };
  }

  tipBody(p) {
    if (this.kind === 'heatmap') { const c = this.cellInfo(p.col, p.row); return c ? this.detailsBody(c) : null; }
    const g = this.grid;
    const rows = g.keys.filter((k) => !this.view.hidden.includes(k)).map((k) => [k, g.series.get(k)[p.col]]).filter((r) => r[1]);
    return h('div', {}, h('div', { class: 'tt' }, `${fmtTime(p.t)} (+${this.frame.g} s)${g.have[p.col] ? '' : ' · no final value yet'}`),
      rows.length ? h('table', {}, rows.map(([k, v]) => h('tr', {}, h('td', {}, h('i', { class: 'sw', style: `background:${this.colors.get(k)}` }), k || 'total'),
        h('td', { class: 'num' }, g.pct && g.total[p.col] ? `${fmtCount(v)} (${fmtCount((100 * v) / g.total[p.col])}%)` : fmtCount(v)))))
        : h('div', { class: 'dim' }, 'nothing'));
  }

  showTip(p) {
    const body = this.tipBody(p);
    if (!body) { this.tip.hidden = true; return; }
    this.tip.replaceChildren(body);
    const w = this.canvas.clientWidth;
    this.tip.style.left = `${Math.max(0, Math.min(p.mx + 14, w - 240))}px`;
    this.tip.style.top = `${p.my + 14}px`;
    this.tip.hidden = false;
  }

  // after a redraw the tip describes what is under the pointer now: the
  // same column and row, whose second has moved with the window
  refreshTip() {
    if (!this.hover || this.tip.hidden || !this.frame) return;
    this.hover.t = this.frame.from + this.hover.col * this.frame.g;
    this.showTip(this.hover);
  }

  onMove(e) {
    const p = this.at(e);
    if (this.drag) {
      const r = this.canvas.getBoundingClientRect();
      const x = Math.max(MARGIN.l, Math.min(MARGIN.l + this.plotSize().pw, e.clientX - r.left));
      const a = Math.min(x, this.drag.x0), b = Math.max(x, this.drag.x0);
      Object.assign(this.zoomBox.style, { left: `${a}px`, width: `${b - a}px`, top: `${MARGIN.t}px`, height: `${this.plotH}px` });
      this.zoomBox.hidden = b - a < 4;
      this.drag.x1 = x;
      return;
    }
    if (!p) { this.tip.hidden = true; this.hover = null; this.app.crosshair(null); return; }
    this.hover = p;
    this.showTip(p);
    this.app.crosshair(p.t + this.frame.g / 2);
  }

  onDown(e) {
    if (e.button !== 0) return;
    const r = this.canvas.getBoundingClientRect();
    const x0 = e.clientX - r.left;
    this.drag = { x0, x1: x0 };
    const up = (ev) => {
      window.removeEventListener('mouseup', up);
      const d = this.drag;
      this.drag = null;
      this.zoomBox.hidden = true;
      if (Math.abs(d.x1 - d.x0) >= 6) {
        const sz = this.plotSize();
        const tOf = (x) => this.frame.from + ((x - MARGIN.l) / sz.pw) * this.frame.n * this.frame.g;
        const a = Math.floor(tOf(Math.min(d.x0, d.x1))), b = Math.ceil(tOf(Math.max(d.x0, d.x1)));
        this.app.zoom(a, Math.max(b, a + 2 * this.frame.g));
        return;
      }
      const p = this.at(ev);
      if (p && this.kind === 'heatmap') { this.pinned = { t: p.t, row: p.row }; this.draw(); this.app.stateChanged(); }
    };
    window.addEventListener('mouseup', up);
  }

  onKey(e) {
    if (!this.grid) return;
    const g = this.grid;
    const c = this.cursor || { col: g.n - 1, row: 0 };
    let handled = true;
    switch (e.key) {
    case 'ArrowLeft': c.col = Math.max(0, c.col - 1); break;
    case 'ArrowRight': c.col = Math.min(g.n - 1, c.col + 1); break;
    case 'ArrowUp': c.row = Math.min(g.rows - 1, c.row + 1); break;
    case 'ArrowDown': c.row = Math.max(0, c.row - 1); break;
    case 'Home': c.col = 0; break;
    case 'End': c.col = g.n - 1; break;
    case 'Enter':
      if (this.kind === 'heatmap') { this.pinned = { t: this.frame.from + c.col * this.frame.g, row: c.row }; this.app.stateChanged(); }
      break;
    case 'Escape':
      if (this.pinned) { this.unpin(); e.stopPropagation(); } else handled = false;
      break;
    default: handled = false;
    }
    if (!handled) return;
    e.preventDefault();
    this.cursor = c;
    this.draw();
    const t = this.frame.from + c.col * this.frame.g;
    const sz = this.plotSize();
    const mx = MARGIN.l + ((c.col + 0.5) / g.n) * sz.pw, my = MARGIN.t + (1 - (c.row + 0.5) / g.rows) * sz.ph;
    this.hover = { col: c.col, row: c.row, t, mx, my };
    this.showTip(this.hover);
    this.app.crosshair(t + this.frame.g / 2);
    setText(this.live, this.tip.textContent);
  }

  // ---- the shared crosshair ------------------------------------------------

  drawCrosshair() {
    const t = this.app.crosshairT;
    if (t === null || t === undefined || !this.frame) { this.xhair.hidden = true; return; }
    const u = (t - this.frame.from) / (this.frame.n * this.frame.g);
    if (u < 0 || u > 1) { this.xhair.hidden = true; return; }
    const sz = this.plotSize();
    Object.assign(this.xhair.style, { left: `${MARGIN.l + u * sz.pw}px`, top: `${MARGIN.t}px`, height: `${this.plotH}px` });
    this.xhair.hidden = false;
  }

  // ---- export --------------------------------------------------------------

  fileBase() { return `kvmscope-${this.instr.module}.${this.instr.stat}-${this.id}-${this.frame ? this.frame.from : 0}`; }

  exportRows() {
    const s = this.frame;
    const rows = [];
    for (const [t, v] of this.store.range(s.from, s.to)) {
      if (v === null || v === undefined) continue;
      if (typeof v === 'number') rows.push([t, '', '', '', v]);
      else if (Array.isArray(v)) for (const [[lo, hi], c] of v) rows.push([t, '', lo, hi, c]);
      else for (const [k, x] of Object.entries(v)) {
        if (typeof x === 'number') rows.push([t, k, '', '', x]);
        else if (Array.isArray(x)) for (const [[lo, hi], c] of x) rows.push([t, k, lo, hi, c]);
      }
    }
    return rows;
  }

  exportCsv() {
    const q = (x) => (/[",\n]/.test(String(x)) ? `"${String(x).replace(/"/g, '""')}"` : String(x));
    const head = ['start_time', (this.discFields.join('+') || 'key'), `${this.numField || 'value'}_lo`, `${this.numField || 'value'}_hi`, 'count'];
    const text = [head, ...this.exportRows()].map((r) => r.map(q).join(',')).join('\n') + '\n';
    this.lastExport = text;
    download(`${this.fileBase()}.csv`, text, 'text/csv');
  }

  exportJson() {
    const s = this.frame;
    const text = JSON.stringify({
      instrumentation: this.instr, start_time: s.from, end_time: s.to + s.g, final_until: this.store.finalUntil,
      view: this.view, points: this.store.range(s.from, s.to).map(([t, v]) => ({ start_time: t, duration: s.g, value: v })),
    }, null, 1);
    this.lastExport = text;
    download(`${this.fileBase()}.json`, text, 'application/json');
  }

  exportPng() {
    const url = this.canvas.toDataURL('image/png');
    this.lastExport = url;
    download(`${this.fileBase()}.png`, url);
  }

  curlCommand() {
    const s = this.frame;
    const url = `${location.origin}/ca/instrumentations/${encodeURIComponent(this.id)}/value/raw?start_time=${s.from}&duration=${s.g}&ndatapoints=${s.n}`;
    // the token itself never goes to the clipboard: the shell fills it in
    return `curl -s${getToken() ? ' -H "Authorization: Bearer $KVMSCOPE_TOKEN"' : ''} '${url}'`;
  }

  async exportCurl() {
    const cmd = this.curlCommand();
    this.curlOut.value = cmd;
    this.curlOut.hidden = false;
    this.curlOut.select();
    this.lastExport = cmd;
    try { await navigator.clipboard.writeText(cmd); this.curlOut.title = 'copied to the clipboard'; } catch { this.curlOut.title = 'select and copy'; }
  }

  // ---- axes -----------------------------------------------------------

  axes(ctx, sz, start, duration, ymin, ymax, fmtY, ylabel, frameOnly, sc) {
    ctx.font = '11px ui-monospace, "DejaVu Sans Mono", monospace';
    ctx.fillStyle = '#aab4c0';
    ctx.strokeStyle = '#2a313b';
    ctx.lineWidth = 1;
    const yAt = (v) => Math.round(MARGIN.t + sz.ph * (1 - (sc ? sc.f(v) : (v - ymin) / (ymax - ymin)))) + 0.5;
    let ticks = [];
    if (sc && sc.log) {
      for (let e = Math.ceil(Math.log10(ymin) - 1e-9); e <= Math.log10(ymax) + 1e-9; e++) ticks.push(Math.pow(10, e));
    } else {
      const step = this.isBytes && this.kind === 'heatmap' ? niceStepBinary(ymax - ymin, 5) : niceStep(ymax - ymin, 5);
      for (let v = Math.ceil(ymin / step) * step; v <= ymax + step * 1e-9; v += step) ticks.push(v);
    }
    ctx.textAlign = 'right'; ctx.textBaseline = 'middle';
    for (const v of ticks) {
      const y = Math.max(MARGIN.t + 5, Math.min(MARGIN.t + sz.ph - 5, yAt(v)));
      if (!frameOnly) { ctx.beginPath(); ctx.moveTo(MARGIN.l, yAt(v)); ctx.lineTo(MARGIN.l + sz.pw, yAt(v)); ctx.stroke(); }
      ctx.beginPath(); ctx.moveTo(MARGIN.l - 4, yAt(v)); ctx.lineTo(MARGIN.l, yAt(v)); ctx.stroke();
      ctx.fillText(fmtY(v), MARGIN.l - 6, y);
    }
    // x: wall-clock ticks on round seconds/minutes; no label leaves the canvas
    const tstep = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400]
      .find((s) => duration / s <= Math.max(2, sz.pw / 90)) || 86400;
    ctx.textBaseline = 'top';
    let xLabelMax = 0;
    for (let t = Math.ceil(start / tstep) * tstep; t <= start + duration; t += tstep) {
      const x = Math.round(MARGIN.l + ((t - start) / duration) * sz.pw) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, MARGIN.t + sz.ph); ctx.lineTo(x, MARGIN.t + sz.ph + 4); ctx.stroke();
      const full = fmtTime(t);
      const label = tstep >= 60 ? full.slice(0, 5) : full;
      const w = ctx.measureText(label).width;
      ctx.textAlign = x + w / 2 > sz.w - 1 ? 'right' : x - w / 2 < 0 ? 'left' : 'center';
      const ax = ctx.textAlign === 'right' ? sz.w - 1 : x;
      ctx.fillText(label, ax, MARGIN.t + sz.ph + 7);
      xLabelMax = Math.max(xLabelMax, ctx.textAlign === 'right' ? ax : ctx.textAlign === 'left' ? ax + w : ax + w / 2);
    }
    ctx.strokeStyle = '#3a4350';
    ctx.strokeRect(MARGIN.l - 0.5, MARGIN.t - 0.5, sz.pw + 1, sz.ph + 1);
    // the y title sits left of the widest tick label, never over one
    let wmax = 0;
    for (const v of ticks) wmax = Math.max(wmax, ctx.measureText(fmtY(v)).width);
    this.yTitleRight = 7 + 6;
    this.yTickLeft = MARGIN.l - 6 - wmax;
    ctx.save();
    ctx.translate(Math.min(7, this.yTickLeft - 7), MARGIN.t + sz.ph / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'center'; ctx.textBaseline = 'middle';
    ctx.fillStyle = '#c6ced8';
    ctx.fillText(ylabel, 0, 0);
    ctx.restore();
    this.canvas.dataset.yTickLeft = String(Math.round(this.yTickLeft));
    this.canvas.dataset.xLabelMax = String(Math.ceil(xLabelMax));
    this.canvas.dataset.cssWidth = String(sz.w);
    this.canvas.dataset.yTicks = ticks.map((v) => fmtY(v)).join('|');
  }
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
function round2(v) { return Math.round(v * 100) / 100; }
